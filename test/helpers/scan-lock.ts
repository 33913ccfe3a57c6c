/** The sessions that hold the scan's lock (`SCAN_LOCK`, one bigint advisory key), seen on PostgreSQL directly. */
import { sql } from 'kysely';
import type { Db } from '../../src/db/database.ts';
import { SCAN_LOCK } from '../../src/scan.ts';

export interface ScanLockHolder {
  pid: number;
  state: string;
  backend_xmin: string | null;
  backend_xid: string | null;
}

/** Each session holding the lock (granted, not waiting for it): its pid, state, snapshot and transaction id. */
export async function scanLockHolders(db: Db): Promise<ScanLockHolder[]> {
  return (await sql<ScanLockHolder>`
    select l.pid, a.state, a.backend_xmin::text, a.backend_xid::text from pg_locks l join pg_stat_activity a using (pid)
    where l.locktype = 'advisory' and l.objsubid = 1 and l.granted
      and l.classid::int8 = (hashtextextended(${SCAN_LOCK}, 0) >> 32) & 4294967295
      and l.objid::int8 = hashtextextended(${SCAN_LOCK}, 0) & 4294967295`.execute(db)).rows;
}

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

/**
 * Each session holding the lock (granted, not waiting for it) in `db`'s database: its pid, state,
 * snapshot and transaction id. Advisory locks are per database, and other test files scan their
 * own databases at the same time: a holder there is not this database's.
 */
export async function scanLockHolders(db: Db): Promise<ScanLockHolder[]> {
  return (await sql<ScanLockHolder>`
    select l.pid, a.state, a.backend_xmin::text, a.backend_xid::text from pg_locks l join pg_stat_activity a using (pid)
    where l.locktype = 'advisory' and l.objsubid = 1 and l.granted
      and l.database = (select oid from pg_database where datname = current_database())
      and l.classid::int8 = (hashtextextended(${SCAN_LOCK}, 0) >> 32) & 4294967295
      and l.objid::int8 = hashtextextended(${SCAN_LOCK}, 0) & 4294967295`.execute(db)).rows;
}

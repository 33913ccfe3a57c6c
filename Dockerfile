FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY src ./src
COPY workers ./workers
COPY migrations ./migrations
COPY templates ./templates
COPY tsconfig.json ./
ENV NODE_ENV=production
# Not root: the image's own user, which owns nothing but the folder .eml files would go to
# (development only: production requires SMTP_URL).
RUN mkdir -p /app/outbox && chown node:node /app/outbox
USER node
EXPOSE 3000
CMD ["node", "bin/nudge.js", "start"]

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
EXPOSE 3000
CMD ["node", "bin/nudge.js", "start"]

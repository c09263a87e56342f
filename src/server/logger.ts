import { pino, type Logger } from 'pino';

export type { Logger };

// Fixed field names across components: requestId, sessionId, sandboxId. Credentials and tickets
// are redacted wherever they appear in a logged object.
export const redactPaths = [
  'authorization',
  'cookie',
  '*.authorization',
  '*.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'ticket',
  '*.ticket',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'porthole' },
      redact: { paths: redactPaths, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

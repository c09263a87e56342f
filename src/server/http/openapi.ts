import { z } from 'zod';
import { version } from '../../protocol/version.js';
import type { RouteDef } from './routes.js';

type JsonSchema = Record<string, unknown>;

const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

/**
 * A response's content: JSON, or for a streaming route's 200 Server-Sent Events whose `data:` items
 * are its schema (`on-accept`: the paged JSON, or a stream of the page's items).
 */
function contentOf(route: RouteDef, status: string, schema: z.ZodType): Record<string, unknown> {
  const json = { 'application/json': { schema: toSchema(schema, 'output') } };
  if (status !== '200' || !route.eventStream) return json;
  if (route.eventStream === 'only') return { 'text/event-stream': { itemSchema: toSchema(schema, 'output') } };
  const items = (schema as z.ZodObject).shape.events as z.ZodArray;
  return { ...json, 'text/event-stream': { itemSchema: toSchema(items.element as z.ZodType, 'output') } };
}

/** OpenAPI 3.1 document generated from the route table, so the description cannot drift from what validates. */
export function openApiDocument(routes: readonly RouteDef[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [where, schema] of [
      ['path', route.params],
      ['query', route.query],
    ] as const) {
      if (!schema) continue;
      for (const [name, field] of Object.entries(schema.shape)) {
        parameters.push({
          name,
          in: where,
          required: where === 'path' || !(field as z.ZodType).safeParse(undefined).success,
          schema: toSchema(field as z.ZodType, 'input'),
        });
      }
    }
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      security:
        route.auth === 'none'
          ? []
          : route.auth === 'agent'
            ? [{ sandboxToken: [] }]
            : route.auth === 'api-key'
              ? [{ apiKey: [] }]
              : route.auth === 'api' || route.auth === 'admin'
                ? [{ apiKey: [] }, { dashboardCookie: [] }]
                : [{ apiKey: [] }, { dashboardCookie: [] }, { viewerTicket: [] }],
      parameters,
      responses: Object.fromEntries(
        Object.entries(route.responses).map(([status, schema]) => [
          status,
          {
            description: status.startsWith('2') ? 'OK' : 'Error (see docs/errors.md)',
            content: contentOf(route, status, schema),
          },
        ]),
      ),
    };
    if (route.body) operation.requestBody = { required: true, content: { 'application/json': { schema: toSchema(route.body, 'input') } } };
    const item = paths[path] ?? {};
    item[route.method.toLowerCase()] = operation;
    paths[path] = item;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'porthole', version, description: 'Sessions, viewer tickets and timelines. WebSocket: GET /v1/sessions/{id}/vnc?ticket=… (raw RFB).' },
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'An API key.' },
        dashboardCookie: { type: 'apiKey', in: 'cookie', name: 'porthole_login' },
        sandboxToken: { type: 'http', scheme: 'bearer', description: 'The per-sandbox token the server hands its agent (agent routes only).' },
        viewerTicket: { type: 'http', scheme: 'ticket', description: 'Authorization: Ticket <viewer ticket>, for the session it is bound to.' },
      },
    },
    paths,
  };
}

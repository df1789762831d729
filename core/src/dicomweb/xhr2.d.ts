// xhr2 ships no types. Only what transport.ts uses: the XMLHttpRequest surface
// dicomweb-client drives, xhr2's per-instance agent setting, and the socket-error hook the
// transport overrides to learn why a request failed (ECONNREFUSED, a TLS code, …).
declare module 'xhr2' {
  import type { Agent as HttpAgent } from 'node:http';
  import type { Agent as HttpsAgent } from 'node:https';

  class XMLHttpRequest {
    timeout: number;
    readonly status: number;
    readonly readyState: number;
    responseType: string;
    readonly response: unknown;
    open(method: string, url: string, async?: boolean): void;
    setRequestHeader(name: string, value: string): void;
    getResponseHeader(name: string): string | null;
    send(body?: unknown): void;
    abort(): void;
    addEventListener(type: string, listener: () => void): void;
    nodejsSet(options: { httpAgent?: HttpAgent; httpsAgent?: HttpsAgent }): void;
    protected _onHttpRequestError(request: unknown, error: Error): void;
  }
  export default XMLHttpRequest;
}

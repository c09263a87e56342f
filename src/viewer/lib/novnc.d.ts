// noVNC ships no type declarations; this covers the part of its public API (docs/API.md) the viewer
// uses. Its event target is a small mixin, not a DOM EventTarget, so the methods are declared here.
declare module '@novnc/novnc' {
  export interface RfbOptions {
    /** Ask the VNC server to keep other viewers connected (a second tab must not kick the first). */
    shared?: boolean;
    credentials?: { username?: string; password?: string; target?: string };
    repeaterID?: string;
    wsProtocols?: string[];
  }

  export interface RfbEventDetails {
    connect: Record<string, never>;
    disconnect: { clean: boolean };
    securityfailure: { status: number; reason?: string };
    credentialsrequired: { types: string[] };
    desktopname: { name: string };
    clipboard: { text: string };
    bell: Record<string, never>;
    capabilities: { capabilities: { power: boolean } };
  }

  export default class RFB {
    /** A URL, or an already created WebSocket (the viewer creates its own to read close codes). */
    constructor(target: HTMLElement, urlOrChannel: string | WebSocket, options?: RfbOptions);
    scaleViewport: boolean;
    resizeSession: boolean;
    clipViewport: boolean;
    viewOnly: boolean;
    focusOnClick: boolean;
    showDotCursor: boolean;
    background: string;
    qualityLevel: number;
    compressionLevel: number;
    disconnect(): void;
    /** A key press (down and up when `down` is omitted); `code` is the KeyboardEvent.code or null. */
    sendKey(keysym: number, code: string | null, down?: boolean): void;
    /** Hands text to the VNC server's clipboard (ClientCutText or the extended clipboard). */
    clipboardPasteFrom(text: string): void;
    focus(options?: FocusOptions): void;
    blur(): void;
    addEventListener<K extends keyof RfbEventDetails>(type: K, listener: (event: CustomEvent<RfbEventDetails[K]>) => void): void;
    removeEventListener<K extends keyof RfbEventDetails>(type: K, listener: (event: CustomEvent<RfbEventDetails[K]>) => void): void;
  }
}

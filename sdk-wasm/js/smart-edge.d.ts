// Types of the smart-edge SDK (sdk-wasm/js/smart-edge.js).

export interface AuthorizeOptions {
  /** The client id registered with the authorization server. */
  clientId: string;
  /** Space-separated scopes; default "launch/patient openid fhirUser". `launch` is added for an EHR launch. */
  scope?: string;
  /** Where the server sends the browser back: absolute, or relative to the current page (default: the current page). */
  redirectUri?: string;
  /** The FHIR base the EHR launched from (default: the page's `iss` parameter). */
  iss?: string;
  /** A standalone launch against this FHIR base (ignores the page's `iss` and `launch`). */
  fhirServiceUrl?: string;
  /** The EHR's launch value (default: the page's `launch` parameter). */
  launch?: string;
  /** Return the authorization URL instead of navigating to it. */
  noRedirect?: boolean;
  /** Where the authorization page opens: "_self" (default), "_top", "_blank", "popup", or a window/frame name. */
  target?: "_self" | "_top" | "_parent" | "_blank" | "popup" | (string & {});
}

export interface FhirContextItem {
  reference?: string;
  canonical?: string;
  identifier?: unknown;
  type?: string;
  role?: string;
}

/** The token response, with the SMART launch context. */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  scope?: string;
  refresh_token?: string;
  id_token?: string;
  patient?: string;
  encounter?: string;
  fhirContext?: FhirContextItem[];
  need_patient_banner?: boolean;
  smart_style_url?: string;
  intent?: string;
  tenant?: string;
  [extension: string]: unknown;
}

export interface Endpoints {
  authorize: string;
  token: string;
  revoke?: string | null;
  issuer?: string | null;
  jwksUri?: string | null;
  capabilities: string[];
}

/** `client.state`: serialisable; `new Client(state)` brings a client back. */
export interface ClientState {
  serverUrl: string;
  clientId: string;
  redirectUri: string;
  scope: string;
  endpoints: Endpoints;
  /** The authorization's token response, as the server sent it (with its launch context). */
  tokenResponse: TokenResponse;
  /** The current tokens (a refresh replaces them). */
  accessToken: string;
  refreshToken: string | null;
  /** Seconds since the epoch. */
  expiresAt: number | null;
  patient: string | null;
  encounter: string | null;
  /** The verified ID token's claims. */
  idTokenClaims: IdTokenClaims | null;
  fhirUser: string | null;
}

export interface IdTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat?: number;
  nonce?: string;
  fhirUser?: string;
  [claim: string]: unknown;
}

export interface RequestOptions {
  /** Pages to fetch through `next` links: 1 (default) = the first, 0 = all. */
  pageLimit?: number;
  /** Answer the resources of every page's entries as one array. */
  flat?: boolean;
}

export interface FhirRequest {
  url: string;
  method?: "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
  body?: unknown;
  headers?: Record<string, string>;
}

/** A FHIR resource (JSON). */
export interface Resource {
  resourceType: string;
  id?: string;
  [element: string]: unknown;
}

export declare class SmartError extends Error {
  /** The OAuth error (`access_denied`, `invalid_grant`, …), the FHIR issue code (`not-found`, …), or the SDK's own (`invalid_state`, `invalid_id_token`, `no_session`, …). */
  code: string;
  /** The HTTP status when a server answered. */
  status: number | null;
  /** The server's OperationOutcome, when it sent one. */
  outcome: Resource | null;
}

export declare class Client {
  constructor(state: ClientState);
  state: ClientState;
  patient: {
    readonly id: string | null;
    read(): Promise<Resource>;
    /** A request within the patient's compartment (`patient=` is added to searches). */
    request<T = any>(urlOrRequest: string | FhirRequest, options?: RequestOptions): Promise<T>;
  };
  encounter: { readonly id: string | null; read(): Promise<Resource> };
  user: { readonly fhirUser: string | null; readonly id: string | null; readonly resourceType: string | null; read(): Promise<Resource> };
  readonly needPatientBanner: boolean;
  readonly smartStyleUrl: string | null;
  getIdToken(): IdTokenClaims | null;
  getFhirContext(): FhirContextItem[];
  request<T = any>(urlOrRequest: string | FhirRequest, options?: RequestOptions): Promise<T>;
  refresh(): Promise<ClientState>;
  logout(): Promise<void>;
}

export declare function authorize(options: AuthorizeOptions): Promise<string>;
export declare function ready(): Promise<Client>;
export declare function init(options: AuthorizeOptions): Promise<Client>;
export declare function discover(fhirBase: string): Promise<Endpoints>;
export declare const oauth2: { authorize: typeof authorize; ready: typeof ready; init: typeof init };
declare const SMART: { oauth2: typeof oauth2; authorize: typeof authorize; ready: typeof ready; init: typeof init; discover: typeof discover; Client: typeof Client; SmartError: typeof SmartError };
export default SMART;

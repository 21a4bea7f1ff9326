import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Everything GET /prod-discovery/api/status returns. */
export interface IStatus {
  version: string;
  environment: { name: string; color: string };
  guards: { [name: string]: boolean };
  vault: {
    configured: boolean;
    reachable: boolean;
    authenticated: boolean;
    address: string | null;
    error: string | null;
    /** 'service' when the trusted service holds Vault and this server is its client. */
    via?: 'service';
    identity: {
      display_name: string;
      policies: string[];
      ttl: number;
      renewable: boolean;
    } | null;
  };
  user: { name: string | null };
  /** What this user may see; absent on servers older than the audit viewer. */
  permissions?: { audit: boolean };
  /** What protects the controls; absent on older servers. */
  boundary?: IBoundary;
  /** Every path to a kernel or a shell (guard/paths.py); absent on older servers. */
  paths?: IPaths;
}

/** Each path's state: guarded, refused, unguarded (explicitly allowed) or denied. */
export interface IPaths {
  paths: { [name: string]: string };
  reasons: { [name: string]: string };
  /** False while any path runs unguarded. */
  ok: boolean;
  /** c.ProdDiscoveryApp.terminals: 'audit' or 'deny'. */
  terminals: string;
}

/** The server's trust boundary (hardening.boundary_status on the server). */
export interface IBoundary {
  /** same-user: everything runs as the user (evaluation only); service: a trusted service. */
  mode: 'same-user' | 'service';
  label: string;
  /** Whether the server process is non-dumpable (its /proc environ and memory unreadable). */
  non_dumpable: boolean;
}

/** An error answer of the server API with its message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: any = null
  ) {
    super(message);
  }
}

/** The one typed REST client of the extension. */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'prod-discovery', 'api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
  }
  if (!response.ok) {
    const message =
      (data && (data.message || data.reason)) || response.statusText;
    throw new ApiError(response.status, message, data);
  }
  return data as T;
}

export function getStatus(): Promise<IStatus> {
  return requestAPI<IStatus>('status');
}

/** One lease of a kernel, as GET /credentials shows it (never the secret). */
export interface ILease {
  profile: string;
  lease_id: string;
  ttl_left: number | null;
  renewable: boolean;
}

/** One kernel's credentials. */
export interface IKernelCredentials {
  kernel_id: string;
  kernel_name: string;
  owner: string | null;
  profiles: string[];
  leases: ILease[];
}

export interface ICredentials {
  active: boolean;
  kernels: IKernelCredentials[];
}

export function getCredentials(): Promise<ICredentials> {
  return requestAPI<ICredentials>('credentials');
}

export function renewCredentials(
  kernelId: string
): Promise<IKernelCredentials> {
  return requestAPI<IKernelCredentials>(
    `credentials/${encodeURIComponent(kernelId)}/renew`,
    { method: 'POST' }
  );
}

/** One promotion gate's result. */
export interface IGateResult {
  name: string;
  passed: boolean;
  reason: string;
  skipped: boolean;
  overridden: boolean;
  override_reason: string | null;
}

export interface IExportRequest {
  path: string;
  targets: string[];
  parameters: { [key: string]: unknown };
  overrides: { [gate: string]: string };
  output?: string;
}

/** Which key signed a bundle's manifest, and where the signature file is. */
export interface ISignature {
  algorithm: string;
  key_id: string;
  file: string;
  /** Where the key lives (never key material). */
  signer?: string;
  /** Whether the written bundle verified offline with the signer's public key. */
  verified?: boolean;
  verification?: string;
}

/** 201 (exported) and 422 (refused) both answer with the gates. */
export interface IExportResult {
  exported: boolean;
  message?: string;
  bundle?: string;
  manifest_sha256?: string;
  /** Which key signed the manifest, and where the signature file is. */
  signature?: ISignature;
  gates: IGateResult[];
}

/** POST /exports; a 422 refusal is a result, not an error. */
export async function exportNotebook(
  request: IExportRequest
): Promise<IExportResult> {
  try {
    return await requestAPI<IExportResult>('exports', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  } catch (error) {
    if (error instanceof ApiError && error.status === 422 && error.body) {
      return error.body as IExportResult;
    }
    throw error;
  }
}

/** An export job (POST /export-jobs, then GET /export-jobs/<id> until done). */
export interface IExportJob {
  id: string;
  state: 'running' | 'exported' | 'refused' | 'failed';
  done: boolean;
  /** The gates completed so far, in order: one more each time a gate finishes. */
  gates: IGateResult[];
  message?: string;
  bundle?: string | null;
  manifest_sha256?: string;
  signature?: ISignature;
  /** Who decided and signed: "prod-discovery-service" or "this server". */
  signer?: string;
  /** What the server checked of the files it wrote (no key needed). */
  verification?: { files_match_manifest: boolean; problems: string[] };
  timings?: { [step: string]: number };
}

/** Start an export job; the gates then run (in the trusted service when there is one). */
export function createExportJob(request: IExportRequest): Promise<IExportJob> {
  return requestAPI<IExportJob>('export-jobs', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}

/** The job's progress: each gate's result as soon as it is known. */
export function getExportJob(id: string): Promise<IExportJob> {
  return requestAPI<IExportJob>(`export-jobs/${encodeURIComponent(id)}`);
}

/** One chained audit record. */
export interface IAuditEvent {
  seq: number;
  ts: string;
  kind: string;
  data: { [key: string]: any };
  prev?: string;
  hash?: string;
  mac?: string;
}

export interface IAuditFilters {
  user?: string;
  type?: string;
  path?: string;
  kernel?: string;
  since?: string;
  until?: string;
  limit?: string;
}

export interface IVerifyResult {
  ok: boolean;
  summary: string;
  records: number;
  last_seq: number;
  checkpoints: number;
  warnings: string[];
  problem: {
    index: number;
    seq: number | null;
    what: string;
    detail: string;
  } | null;
}

function query(
  filters: IAuditFilters,
  extra: { [k: string]: string } = {}
): string {
  const params = new URLSearchParams();
  Object.entries({ ...filters, ...extra }).forEach(([k, v]) => {
    if (v) {
      params.set(k, String(v));
    }
  });
  const text = params.toString();
  return text ? `?${text}` : '';
}

export function getAuditEvents(
  filters: IAuditFilters
): Promise<{ events: IAuditEvent[]; count: number }> {
  return requestAPI(`audit/events${query(filters)}`);
}

export function getAuditCSV(filters: IAuditFilters): Promise<string> {
  return requestAPI<string>(`audit/events${query(filters, { format: 'csv' })}`);
}

export function getAuditReport(filters: IAuditFilters): Promise<string> {
  return requestAPI<string>(`audit/report${query(filters)}`);
}

export function verifyAudit(): Promise<IVerifyResult> {
  return requestAPI<IVerifyResult>('audit/verify');
}

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
    identity: {
      display_name: string;
      policies: string[];
      ttl: number;
      renewable: boolean;
    } | null;
  };
  user: { name: string | null };
}

/** An error answer of the server API with its message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
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
    const message = (data && (data.message || data.reason)) || response.statusText;
    throw new ApiError(response.status, message);
  }
  return data as T;
}

export function getStatus(): Promise<IStatus> {
  return requestAPI<IStatus>('status');
}

import { Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import {
  getCredentials,
  ICredentials,
  IKernelCredentials,
  ILease,
  renewCredentials
} from '../api';

/** Options of the credentials section (from the settings). */
export interface ICredentialsOptions {
  /** Seconds between two fetches of /credentials. */
  refreshSeconds: number;
  /** A lease with fewer seconds left is flagged as about to expire. */
  expiryWarningSeconds: number;
}

/** Lease health as the panel shows it. */
export type LeaseHealth = 'ok' | 'expiring' | 'expired' | 'static';

export function leaseHealth(ttl: number | null, warnAt: number): LeaseHealth {
  if (ttl === null) {
    return 'static';
  }
  if (ttl <= 0) {
    return 'expired';
  }
  return ttl <= warnAt ? 'expiring' : 'ok';
}

/** '4m 05s' / '1h 02m' / '12s': short and readable by a screen reader. */
export function formatTTL(ttl: number | null): string {
  if (ttl === null) {
    return 'no expiry';
  }
  const s = Math.max(0, Math.floor(ttl));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) {
    return `${h}h ${pad(m)}m`;
  }
  if (m > 0) {
    return `${m}m ${pad(sec)}s`;
  }
  return `${sec}s`;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * The credentials of the user's kernels: profiles, a TTL countdown per lease, lease health,
 * a renew button, and a notice when a lease is about to expire or a renewal failed.
 *
 * The server is asked every `refreshSeconds`; between two answers the TTLs count down locally
 * (one tick per second) so that the countdown is visible without hammering the server.
 */
export class CredentialsSection extends Widget {
  constructor(options: ICredentialsOptions) {
    super();
    this._options = options;
    this.addClass('jp-ProdDiscovery-credentials');
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Kernel credentials');
    const header = el('h3', 'jp-ProdDiscovery-sectionTitle', 'Credentials');
    this._notice = el('div', 'jp-ProdDiscovery-notice');
    this._notice.setAttribute('role', 'alert');
    this._notice.hidden = true;
    this._list = el('div', 'jp-ProdDiscovery-kernelList');
    this.node.append(header, this._notice, this._list);
    void this.refresh();
    this._fetchTimer = window.setInterval(
      () => void this.refresh(),
      Math.max(2, options.refreshSeconds) * 1000
    );
    this._tickTimer = window.setInterval(() => this._tick(), 1000);
  }

  dispose(): void {
    window.clearInterval(this._fetchTimer);
    window.clearInterval(this._tickTimer);
    super.dispose();
  }

  /** Fetch the credentials now and re-render. */
  async refresh(): Promise<void> {
    try {
      const data = await getCredentials();
      this._render(data);
      this._error = null;
    } catch (reason) {
      this._error = `Credentials unavailable: ${String(reason)}`;
    }
    this._updateNotice();
  }

  private _render(data: ICredentials): void {
    this._fetchedAt = Date.now();
    this._data = data;
    this._list.replaceChildren();
    if (!data.active) {
      this._list.append(
        el(
          'p',
          'jp-ProdDiscovery-empty',
          'The credential broker is not active.'
        )
      );
      return;
    }
    if (data.kernels.length === 0) {
      this._list.append(
        el(
          'p',
          'jp-ProdDiscovery-empty',
          'No running kernel holds credentials.'
        )
      );
      return;
    }
    data.kernels.forEach(k => this._list.append(this._kernelNode(k)));
    this._tick();
  }

  private _kernelNode(kernel: IKernelCredentials): HTMLElement {
    const node = el('section', 'jp-ProdDiscovery-kernel');
    node.dataset.kernelId = kernel.kernel_id;
    const title = el('div', 'jp-ProdDiscovery-kernelTitle');
    const name = el(
      'span',
      'jp-ProdDiscovery-kernelName',
      `${kernel.kernel_name} · ${kernel.kernel_id.slice(0, 8)}`
    );
    name.title = kernel.kernel_id;
    const renew = el(
      'button',
      'jp-Button jp-mod-styled jp-ProdDiscovery-renew',
      'Renew'
    );
    renew.type = 'button';
    renew.setAttribute(
      'aria-label',
      `Renew the credentials of kernel ${kernel.kernel_name} ${kernel.kernel_id.slice(0, 8)}`
    );
    renew.disabled = !kernel.leases.some(l => l.renewable);
    renew.addEventListener('click', () => void this._renew(kernel, renew));
    title.append(name, renew);
    node.append(title);
    const profiles = el('ul', 'jp-ProdDiscovery-leases');
    profiles.setAttribute('aria-label', 'Credential profiles');
    kernel.profiles.forEach(profile => {
      const leases = kernel.leases.filter(l => l.profile === profile);
      if (leases.length === 0) {
        const item = el('li', 'jp-ProdDiscovery-lease');
        item.dataset.health = 'static';
        item.append(
          el('span', 'jp-ProdDiscovery-profile', profile),
          el('span', 'jp-ProdDiscovery-ttl', 'static, no lease')
        );
        profiles.append(item);
      }
      leases.forEach(lease => profiles.append(this._leaseNode(lease)));
    });
    node.append(profiles);
    const failed = this._renewFailed.get(kernel.kernel_id);
    if (failed) {
      node.append(
        el('div', 'jp-ProdDiscovery-renewError', `Renewal failed: ${failed}`)
      );
    }
    return node;
  }

  private _leaseNode(lease: ILease): HTMLElement {
    const item = el('li', 'jp-ProdDiscovery-lease');
    item.dataset.profile = lease.profile;
    item.dataset.lease = lease.lease_id;
    item.dataset.ttl = lease.ttl_left === null ? '' : String(lease.ttl_left);
    const profile = el('span', 'jp-ProdDiscovery-profile', lease.profile);
    profile.title = lease.lease_id;
    const health = el('span', 'jp-ProdDiscovery-health');
    const ttl = el('span', 'jp-ProdDiscovery-ttl');
    ttl.setAttribute('aria-label', `time left for ${lease.profile}`);
    item.append(health, profile, ttl);
    if (!lease.renewable) {
      item.append(el('span', 'jp-ProdDiscovery-badge', 'not renewable'));
    }
    return item;
  }

  /** Count the TTLs down locally and update health and notice. */
  private _tick(): void {
    const elapsed = (Date.now() - this._fetchedAt) / 1000;
    const warnAt = this._options.expiryWarningSeconds;
    this._list
      .querySelectorAll<HTMLElement>('.jp-ProdDiscovery-lease')
      .forEach(item => {
        if (item.dataset.ttl === undefined) {
          return;
        }
        const base = item.dataset.ttl === '' ? null : Number(item.dataset.ttl);
        const left =
          base === null ? null : Math.max(0, Math.round(base - elapsed));
        const health = leaseHealth(left, warnAt);
        item.dataset.health = health;
        const ttl = item.querySelector('.jp-ProdDiscovery-ttl');
        if (ttl) {
          ttl.textContent = formatTTL(left);
        }
        const badge = item.querySelector('.jp-ProdDiscovery-health');
        if (badge) {
          badge.textContent = {
            ok: '●',
            expiring: '▲',
            expired: '✕',
            static: '○'
          }[health];
          badge.setAttribute('aria-label', `lease ${health}`);
          badge.setAttribute('title', `lease ${health}`);
        }
        const profile = item.dataset.profile ?? '';
        const key = item.dataset.lease ?? profile;
        if (health === 'expiring' && !this._warned.has(key)) {
          this._warned.add(key);
          Notification.warning(
            `Credentials "${profile}" expire in ${formatTTL(left)}: renew them or save your work.`,
            { autoClose: 10000 }
          );
        }
      });
    this._updateNotice();
  }

  private _updateNotice(): void {
    const messages: string[] = [];
    if (this._error) {
      messages.push(this._error);
    }
    const expiring = this._list.querySelectorAll(
      '[data-health="expiring"]'
    ).length;
    const expired = this._list.querySelectorAll(
      '[data-health="expired"]'
    ).length;
    if (expired) {
      messages.push(
        `${expired} lease(s) expired: restart the kernel for new credentials.`
      );
    }
    if (expiring) {
      messages.push(`${expiring} lease(s) about to expire.`);
    }
    this._renewFailed.forEach((why, kid) =>
      messages.push(`Renewal failed for kernel ${kid.slice(0, 8)}: ${why}`)
    );
    this._notice.hidden = messages.length === 0;
    this._notice.textContent = messages.join(' ');
  }

  private async _renew(kernel: IKernelCredentials, button: HTMLButtonElement) {
    button.disabled = true;
    button.textContent = 'Renewing…';
    try {
      await renewCredentials(kernel.kernel_id);
      this._renewFailed.delete(kernel.kernel_id);
      Notification.success(
        `Credentials of kernel ${kernel.kernel_name} renewed.`,
        {
          autoClose: 4000
        }
      );
    } catch (reason) {
      const why = String((reason as Error).message ?? reason);
      this._renewFailed.set(kernel.kernel_id, why);
      Notification.error(`Renewing credentials failed: ${why}`, {
        autoClose: false
      });
    }
    await this.refresh();
  }

  /** The last answer of the server (for tests and other components). */
  get data(): ICredentials | null {
    return this._data;
  }

  private _options: ICredentialsOptions;
  private _notice: HTMLElement;
  private _list: HTMLElement;
  private _data: ICredentials | null = null;
  private _error: string | null = null;
  private _fetchedAt = Date.now();
  private _fetchTimer: number;
  private _tickTimer: number;
  private _warned = new Set<string>();
  private _renewFailed = new Map<string, string>();
}

import { Widget } from '@lumino/widgets';

import { IStatus } from '../api';

/**
 * The always-visible environment indicator: environment name and Vault state.
 *
 * Used twice: in the status bar and as a thin banner above the main area, so that nobody can
 * forget they are working on production data.
 */
export class EnvironmentIndicator extends Widget {
  constructor(private readonly kind: 'statusbar' | 'banner') {
    super();
    this.addClass('jp-ProdDiscovery-indicator');
    this.addClass(`jp-ProdDiscovery-indicator-${kind}`);
    this.node.setAttribute('role', 'status');
    this.node.setAttribute('aria-live', 'polite');
    this.node.dataset.vault = 'unknown';
    this.node.textContent = 'Prod Discovery';
  }

  /** Show a fresh status from the server. */
  update_status(status: IStatus): void {
    const vault = status.vault;
    let state: string;
    let label: string;
    if (!vault.configured) {
      state = 'not-configured';
      label = 'Vault not configured';
    } else if (vault.reachable && vault.authenticated) {
      state = 'connected';
      label =
        vault.via === 'service'
          ? 'Vault connected (through the trusted service)'
          : 'Vault connected';
    } else {
      state = 'disconnected';
      label = 'Vault disconnected';
    }
    this.node.dataset.vault = state;
    this.node.style.setProperty(
      '--jp-prod-discovery-color',
      status.environment.color
    );
    // Said wherever the controls run as the user themselves: fine to evaluate, not a boundary.
    const boundary = status.boundary;
    const caveat = boundary?.mode === 'same-user' ? boundary.label : null;
    this.node.dataset.boundary = boundary?.mode ?? 'unknown';
    // Paths to kernels or shells that run unguarded (explicitly allowed) are always said;
    // refused ones and denied terminals are explained in the tooltip.
    const paths = status.paths;
    const unguarded = paths
      ? Object.keys(paths.paths).filter(p => paths.paths[p] === 'unguarded')
      : [];
    this.node.dataset.paths = paths
      ? unguarded.length
        ? 'unguarded'
        : 'ok'
      : 'unknown';
    this.node.dataset.terminals = paths?.terminals ?? 'unknown';
    const pathNote = unguarded.length
      ? `UNGUARDED: ${unguarded.join(', ')}`
      : null;
    const base = `${status.environment.name} · ${label}`;
    const text = pathNote ? `${base} · ${pathNote}` : base;
    this.node.textContent =
      caveat && this.kind === 'banner' ? `${text} · ${caveat}` : text;
    const vaultTip = vault.error ? `${label}: ${vault.error}` : label;
    const notes = paths
      ? Object.keys(paths.reasons).map(p => `${p}: ${paths.reasons[p]}`)
      : [];
    const tip = [vaultTip, caveat, ...notes].filter(Boolean).join('; ');
    this.node.title = tip;
    this.node.setAttribute('aria-label', `${status.environment.name}, ${tip}`);
  }

  /** Show that the server could not be asked. */
  update_error(message: string): void {
    this.node.dataset.vault = 'error';
    this.node.textContent = 'Prod Discovery · status unavailable';
    this.node.title = message;
  }
}

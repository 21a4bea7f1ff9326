import { Widget } from '@lumino/widgets';

import { IStatus } from '../api';

/**
 * The always-visible environment indicator: environment name and Vault state.
 *
 * Used twice: in the status bar and as a thin banner above the main area, so that nobody can
 * forget they are working on production data.
 */
export class EnvironmentIndicator extends Widget {
  constructor(kind: 'statusbar' | 'banner') {
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
      label = 'Vault connected';
    } else {
      state = 'disconnected';
      label = 'Vault disconnected';
    }
    this.node.dataset.vault = state;
    this.node.style.setProperty(
      '--jp-prod-discovery-color',
      status.environment.color
    );
    this.node.textContent = `${status.environment.name} · ${label}`;
    const tip = vault.error ? `${label}: ${vault.error}` : label;
    this.node.title = tip;
    this.node.setAttribute('aria-label', `${status.environment.name}, ${tip}`);
  }

  /** Show that the server could not be asked. */
  update_error(message: string): void {
    this.node.dataset.vault = 'error';
    this.node.textContent = `Prod Discovery · status unavailable`;
    this.node.title = message;
  }
}

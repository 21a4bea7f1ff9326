import { LabIcon } from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { CredentialsSection, ICredentialsOptions } from './credentials';
import { FindingsSection, PIIWatcher } from './pii';

const SHIELD =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
  '<path class="jp-icon3" fill="#616161" d="M12 2 4 5v6c0 5 3.4 9.7 8 11 4.6-1.3 8-6 8-11V5l-8-3z' +
  'm0 4a2 2 0 0 1 2 2v2h1v6H9v-6h1V8a2 2 0 0 1 2-2zm0 1.5a.5.5 0 0 0-.5.5v2h1V8a.5.5 0 0 0-.5-.5z"/>' +
  '</svg>';

export const shieldIcon = new LabIcon({
  name: 'prod-discovery:shield',
  svgstr: SHIELD
});

/** The left sidebar: credentials of the user's kernels, PII findings, and (for compliance) audit. */
export class ProdDiscoverySidebar extends Panel {
  constructor(options: ICredentialsOptions, watcher: PIIWatcher) {
    super();
    this.id = 'jp-ProdDiscovery-sidebar';
    this.addClass('jp-ProdDiscovery-sidebar');
    this.title.icon = shieldIcon;
    this.title.caption = 'Prod Discovery: credentials and PII findings';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Prod Discovery');
    this.credentials = new CredentialsSection(options);
    this.findings = new FindingsSection(watcher);
    this._auditSlot = new Widget();
    this._auditSlot.addClass('jp-ProdDiscovery-auditSlot');
    this.addWidget(this.credentials);
    this.addWidget(this.findings);
    this.addWidget(this._auditSlot);
  }

  /** Record that the server was asked whether this user may see the audit viewer. */
  setAuditAllowed(allowed: boolean): void {
    this.node.dataset.audit = allowed ? 'shown' : 'hidden';
  }

  /** Offer the audit viewer (only called for users with the compliance permission). */
  offerAudit(open: () => void): void {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'jp-Button jp-mod-styled jp-ProdDiscovery-openAudit';
    b.textContent = 'Open the audit trail';
    b.addEventListener('click', open);
    this._auditSlot.node.replaceChildren(b);
  }

  readonly credentials: CredentialsSection;
  readonly findings: FindingsSection;
  private _auditSlot: Widget;
}

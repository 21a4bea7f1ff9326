import { Widget } from '@lumino/widgets';

import {
  getAuditCSV,
  getAuditEvents,
  getAuditReport,
  IAuditEvent,
  IAuditFilters,
  verifyAudit
} from '../api';

/** Event kinds of the trail (audit/recorder.py). */
export const AUDIT_KINDS = [
  'contents',
  'credential',
  'execution',
  'datasource',
  'pii',
  'kernel',
  'export',
  'denied'
];

/** A flat summary of one record, as the CLI's table and CSV show it (audit/query.py row()). */
export function summarize(rec: IAuditEvent): { [k: string]: string } {
  const d = rec.data ?? {};
  let what = d.operation ?? d.action ?? d.phase ?? d.kind ?? '';
  if (rec.kind === 'pii') {
    what = Object.entries(d.entities ?? {})
      .map(([k, v]) => `${k}:${v}`)
      .join(',');
  }
  if (rec.kind === 'datasource') {
    what = `${d.kind} ${d.target} x${d.count ?? 1}`;
  }
  return {
    seq: String(rec.seq ?? ''),
    time: String(rec.ts ?? ''),
    type: rec.kind,
    user: d.user?.username ?? '',
    what: String(what ?? ''),
    path: String(d.path ?? d.resource ?? ''),
    kernel: String(d.kernel_id ?? ''),
    status: d.status === undefined ? '' : String(d.status)
  };
}

const COLUMNS = [
  'seq',
  'time',
  'type',
  'user',
  'what',
  'path',
  'kernel',
  'status'
];

/** Save a text as a file through the browser (the API needs auth headers, so no plain link). */
function download(text: string, name: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * The audit viewer for compliance reviewers: a filterable timeline, the details of one event,
 * the chain's verification status, CSV/JSON downloads and the HTML report.
 * The server refuses every call to non-compliance users; the UI only opens it for the others.
 */
export class AuditViewer extends Widget {
  constructor() {
    super();
    this.id = 'jp-ProdDiscovery-audit';
    this.title.label = 'Audit trail';
    this.title.caption = 'Prod Discovery audit trail';
    this.title.closable = true;
    this.addClass('jp-ProdDiscovery-audit');

    this._verify = document.createElement('div');
    this._verify.className = 'jp-ProdDiscovery-verify';
    this._verify.setAttribute('role', 'status');
    this._verify.setAttribute('aria-live', 'polite');
    this._verify.textContent = 'Chain: not verified yet';

    const form = document.createElement('form');
    form.className = 'jp-ProdDiscovery-auditFilters';
    form.setAttribute('aria-label', 'Filter audit events');
    const input = (name: string, label: string, type = 'text') => {
      const wrap = document.createElement('label');
      wrap.textContent = label;
      const i = document.createElement('input');
      i.type = type;
      i.name = name;
      i.className = 'jp-mod-styled';
      wrap.append(i);
      form.append(wrap);
      this._inputs[name] = i;
    };
    input('user', 'User');
    const kindLabel = document.createElement('label');
    kindLabel.textContent = 'Event type';
    const kind = document.createElement('select');
    kind.name = 'type';
    kind.className = 'jp-mod-styled';
    ['', ...AUDIT_KINDS].forEach(k => {
      const o = document.createElement('option');
      o.value = k;
      o.textContent = k || 'any';
      kind.append(o);
    });
    kindLabel.append(kind);
    form.append(kindLabel);
    this._inputs.type = kind;
    input('path', 'Path');
    input('kernel', 'Kernel');
    input('since', 'Since', 'datetime-local');
    input('until', 'Until', 'datetime-local');
    const apply = document.createElement('button');
    apply.type = 'submit';
    apply.className = 'jp-Button jp-mod-styled jp-mod-accept';
    apply.textContent = 'Apply filters';
    form.append(apply);
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.refresh();
    });

    const actions = document.createElement('div');
    actions.className = 'jp-ProdDiscovery-auditActions';
    const button = (label: string, fn: () => Promise<void>) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'jp-Button jp-mod-styled';
      b.textContent = label;
      b.addEventListener('click', () => void fn().catch(e => this._fail(e)));
      actions.append(b);
    };
    button('Refresh', () => this.refresh());
    button('Verify chain', () => this.verify());
    button('Download CSV', async () =>
      download(await getAuditCSV(this.filters()), 'audit.csv', 'text/csv')
    );
    button('Download JSON', async () =>
      download(
        JSON.stringify(this._events, null, 1),
        'audit.json',
        'application/json'
      )
    );
    button('HTML report', async () =>
      download(
        await getAuditReport(this.filters()),
        'audit-report.html',
        'text/html'
      )
    );

    this._table = document.createElement('table');
    this._table.className = 'jp-ProdDiscovery-auditTable';
    this._table.setAttribute('aria-label', 'Audit events');
    const head = document.createElement('thead');
    const tr = document.createElement('tr');
    COLUMNS.forEach(c => {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = c;
      tr.append(th);
    });
    head.append(tr);
    this._body = document.createElement('tbody');
    this._table.append(head, this._body);
    const tableWrap = document.createElement('div');
    tableWrap.className = 'jp-ProdDiscovery-auditTimeline';
    tableWrap.append(this._table);

    this._details = document.createElement('pre');
    this._details.className = 'jp-ProdDiscovery-auditDetails';
    this._details.setAttribute('aria-label', 'Event details');
    this._details.tabIndex = 0;
    this._details.textContent = 'Select an event to see its details.';

    this._count = document.createElement('div');
    this._count.className = 'jp-ProdDiscovery-auditCount';
    this._count.setAttribute('aria-live', 'polite');

    const split = document.createElement('div');
    split.className = 'jp-ProdDiscovery-auditSplit';
    split.append(tableWrap, this._details);
    this.node.append(this._verify, form, actions, this._count, split);
  }

  /** The filters of the form, as the API takes them. */
  filters(): IAuditFilters {
    const v = (k: string) => (this._inputs[k]?.value ?? '').trim();
    const time = (k: string) => (v(k) ? new Date(v(k)).toISOString() : '');
    return {
      user: v('user'),
      type: v('type'),
      path: v('path'),
      kernel: v('kernel'),
      since: time('since'),
      until: time('until')
    };
  }

  /** Load the events matching the filters and verify the chain. */
  async refresh(): Promise<void> {
    const request = ++this._request;
    try {
      const { events } = await getAuditEvents(this.filters());
      if (request !== this._request) {
        return; // a newer refresh (e.g. other filters) superseded this one
      }
      this._events = events;
      this._render();
    } catch (error) {
      this._fail(error);
    }
    await this.verify();
  }

  async verify(): Promise<void> {
    this._verify.dataset.state = 'running';
    this._verify.textContent = 'Chain: verifying…';
    try {
      const result = await verifyAudit();
      this._verify.dataset.state = result.ok ? 'verified' : 'broken';
      const cps = result.checkpoints
        ? ''
        : ' (no checkpoint yet: truncation of the tail cannot be ruled out)';
      this._verify.textContent = result.ok
        ? `Chain verified: ${result.records} records, last seq ${result.last_seq}${cps}`
        : `Chain BROKEN at ${result.problem?.what} record seq ${result.problem?.seq}: ${result.problem?.detail}`;
    } catch (error) {
      this._verify.dataset.state = 'error';
      this._verify.textContent = `Chain: could not verify (${String((error as Error).message ?? error)})`;
    }
  }

  private _render(): void {
    this._body.replaceChildren();
    this._count.textContent = `${this._events.length} events`;
    this._events
      .slice()
      .reverse()
      .forEach(rec => {
        const s = summarize(rec);
        const tr = document.createElement('tr');
        tr.tabIndex = 0;
        tr.dataset.seq = s.seq;
        tr.dataset.kind = rec.kind;
        tr.setAttribute(
          'aria-label',
          `Event ${s.seq}: ${s.type} ${s.what} by ${s.user}`
        );
        COLUMNS.forEach(c => {
          const td = document.createElement('td');
          td.textContent = s[c];
          tr.append(td);
        });
        const show = () => {
          this._body
            .querySelectorAll('tr[aria-selected="true"]')
            .forEach(r => r.setAttribute('aria-selected', 'false'));
          tr.setAttribute('aria-selected', 'true');
          this._details.textContent = JSON.stringify(rec, null, 2);
        };
        tr.addEventListener('click', show);
        tr.addEventListener('keydown', event => {
          if (event.key === 'Enter' || event.key === ' ') {
            event.preventDefault();
            show();
          }
        });
        this._body.append(tr);
      });
  }

  private _fail(error: unknown): void {
    this._count.textContent = `Could not load the audit trail: ${String((error as Error).message ?? error)}`;
  }

  private _inputs: { [name: string]: HTMLInputElement | HTMLSelectElement } =
    {};
  private _events: IAuditEvent[] = [];
  private _request = 0;
  private _verify: HTMLElement;
  private _table: HTMLTableElement;
  private _body: HTMLElement;
  private _details: HTMLElement;
  private _count: HTMLElement;
}

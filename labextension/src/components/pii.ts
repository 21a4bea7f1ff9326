import { Notification } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

/** What the PII guard did to one output: the action and the entity types with counts. */
export interface IPIIMarker {
  action: 'allow' | 'warn' | 'redact' | 'block';
  entities: { [entityType: string]: number };
}

/** One marked output of a notebook. */
export interface IPIIFinding extends IPIIMarker {
  cell: number;
  output: number;
}

/** A marker as the server wrote it, or null when the value is not one. */
function asMarker(meta: any): IPIIMarker | null {
  if (
    !meta ||
    typeof meta !== 'object' ||
    !['allow', 'warn', 'redact', 'block'].includes(meta.action)
  ) {
    return null;
  }
  const entities: { [k: string]: number } = {};
  Object.entries(meta.entities ?? {}).forEach(([k, v]) => {
    if (typeof v === 'number') {
      entities[k] = v;
    }
  });
  return { action: meta.action, entities };
}

/** Parse 'US_SSN x1, EMAIL_ADDRESS x2' (the guard's notice) into counts. */
export function parseSummary(summary: string): { [k: string]: number } {
  const out: { [k: string]: number } = {};
  summary.split(',').forEach(part => {
    const m = part.trim().match(/^([A-Z0-9_]+) x(\d+)$/);
    if (m) {
      out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
    }
  });
  return out;
}

/**
 * The guard's marker of one output (nbformat JSON or an iopub message content), or null.
 *
 * Only metadata the server sets is trusted: output metadata ``prod_discovery`` (display data,
 * results) and message metadata ``prod_discovery`` (every message; the server removes any a
 * kernel sets). Text is never parsed: a kernel can print a notice or a ``<US_SSN>``
 * placeholder, and that must not look like the guard's work.
 */
export function markerOf(
  output: any,
  messageMetadata?: any
): IPIIMarker | null {
  return (
    asMarker(output?.metadata?.prod_discovery) ??
    asMarker(messageMetadata?.prod_discovery)
  );
}

/** Fold one marker into another: counts add up, the most severe action wins. */
function merge(a: IPIIMarker | undefined, b: IPIIMarker): IPIIMarker {
  if (!a) {
    return { action: b.action, entities: { ...b.entities } };
  }
  const rank = ['allow', 'warn', 'redact', 'block'];
  const entities = { ...a.entities };
  Object.entries(b.entities).forEach(([k, v]) => {
    entities[k] = (entities[k] ?? 0) + v;
  });
  const action =
    rank.indexOf(b.action) > rank.indexOf(a.action) ? b.action : a.action;
  return { action, entities };
}

/** Key of the outputs a stream or error message lands in (they carry no metadata). */
function outputKey(parent: string, output: any): string {
  return `${parent}:${output?.output_type ?? ''}:${output?.name ?? ''}`;
}

/** 'US_SSN ×1, EMAIL_ADDRESS ×2' (never values). */
export function describeEntities(entities: { [k: string]: number }): string {
  const parts = Object.entries(entities)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ×${v}`);
  return parts.length ? parts.join(', ') : 'unscannable output';
}

const VERB = {
  allow: 'Allowed',
  warn: 'PII warning',
  redact: 'Redacted by the PII guard',
  block: 'Blocked by the PII guard'
};

export function describeMarker(marker: IPIIMarker): string {
  return `${VERB[marker.action]}: ${describeEntities(marker.entities)}`;
}

/** Put (or update) the marker on one rendered output; remove it when there is none. */
function applyMarker(node: HTMLElement, marker: IPIIMarker | null): void {
  let badge = node.querySelector(
    ':scope > .jp-ProdDiscovery-piiMarker'
  ) as HTMLElement | null;
  if (!marker || marker.action === 'allow') {
    badge?.remove();
    node.classList.remove('jp-ProdDiscovery-piiOutput');
    return;
  }
  if (!badge) {
    badge = document.createElement('div');
    badge.className = 'jp-ProdDiscovery-piiMarker';
    badge.setAttribute('role', 'note');
    node.prepend(badge);
  }
  node.classList.add('jp-ProdDiscovery-piiOutput');
  badge.dataset.action = marker.action;
  badge.textContent = describeMarker(marker);
}

/** The structural parts of a notebook panel this module uses (no @jupyterlab/notebook dep). */
export interface INotebookPanelLike extends Widget {
  context: {
    path: string;
    model: any;
    sessionContext: any;
    ready: Promise<void>;
  };
  content: { widgets: ReadonlyArray<any>; activeCellIndex: number } & Widget;
}

export function isNotebookPanel(widget: unknown): widget is INotebookPanelLike {
  const w = widget as any;
  return !!(
    w &&
    w.hasClass?.('jp-NotebookPanel') &&
    w.context?.sessionContext &&
    Array.isArray(w.content?.widgets)
  );
}

/**
 * Watches notebooks: notifies on every live output the guard warned, redacted or blocked,
 * marks such outputs in place, and keeps the findings list per notebook.
 */
export class PIIWatcher {
  constructor(options: { notify: boolean }) {
    this._notify = options.notify;
  }

  /** The findings of a notebook changed (argument: the panel). */
  get changed(): ISignal<this, INotebookPanelLike> {
    return this._changed;
  }

  findings(panel: INotebookPanelLike): IPIIFinding[] {
    return this._findings.get(panel) ?? [];
  }

  /** Start watching a notebook panel (idempotent). */
  watch(panel: INotebookPanelLike): void {
    if (this._findings.has(panel)) {
      return;
    }
    this._findings.set(panel, []);
    const schedule = () => {
      window.clearTimeout(this._timers.get(panel));
      this._timers.set(
        panel,
        window.setTimeout(() => this.scan(panel), 150)
      );
    };
    const onIOPub = (_: unknown, msg: any) => {
      const type = msg?.header?.msg_type;
      if (
        !['stream', 'display_data', 'execute_result', 'error'].includes(type)
      ) {
        return;
      }
      const output = { output_type: type, ...msg.content };
      const marker = markerOf(output, msg.metadata);
      const parent = msg?.parent_header?.msg_id ?? '';
      if (marker && (type === 'stream' || type === 'error')) {
        // nbformat keeps no metadata on these outputs: remember the server's marker.
        const key = outputKey(parent, output);
        this._messageMarkers.set(
          key,
          merge(this._messageMarkers.get(key), marker)
        );
      }
      if (marker && marker.action !== 'allow') {
        this._notifyOnce(panel, parent, marker);
      }
      schedule();
    };
    panel.context.sessionContext.iopubMessage.connect(onIOPub);
    panel.context.model.contentChanged.connect(schedule);
    void panel.context.ready.then(schedule);
    panel.disposed.connect(() => {
      window.clearTimeout(this._timers.get(panel));
      this._findings.delete(panel);
    });
  }

  /** Mark the panel's outputs and recompute its findings. */
  scan(panel: INotebookPanelLike): void {
    if (panel.isDisposed) {
      return;
    }
    const found: IPIIFinding[] = [];
    panel.content.widgets.forEach((cell: any, ci: number) => {
      const outputs = cell?.model?.outputs;
      const area = cell?.outputArea;
      if (!outputs || !area) {
        return;
      }
      const parent: string = area.future?.msg?.header?.msg_id ?? '';
      for (let oi = 0; oi < outputs.length; oi++) {
        const json = outputs.get(oi).toJSON();
        const marker =
          markerOf(json) ??
          this._messageMarkers.get(outputKey(parent, json)) ??
          null;
        const child = area.widgets?.[oi] as Widget | undefined;
        if (child) {
          applyMarker(child.node, marker);
        }
        if (marker && marker.action !== 'allow') {
          found.push({ cell: ci, output: oi, ...marker });
        }
      }
    });
    const before = JSON.stringify(this._findings.get(panel) ?? []);
    this._findings.set(panel, found);
    if (before !== JSON.stringify(found)) {
      this._changed.emit(panel);
    }
  }

  private _notifyOnce(
    panel: INotebookPanelLike,
    parent: string,
    marker: IPIIMarker
  ) {
    const key = `${parent}:${marker.action}:${describeEntities(marker.entities)}`;
    if (!this._notify || this._notified.has(key)) {
      return;
    }
    this._notified.add(key);
    const message = `${describeMarker(marker)} in ${panel.context.path}`;
    if (marker.action === 'block') {
      Notification.error(message, { autoClose: 8000 });
    } else {
      Notification.warning(message, { autoClose: 8000 });
    }
  }

  private _notify: boolean;
  private _findings = new Map<INotebookPanelLike, IPIIFinding[]>();
  private _timers = new Map<INotebookPanelLike, number>();
  private _notified = new Set<string>();
  private _messageMarkers = new Map<string, IPIIMarker>();
  private _changed = new Signal<this, INotebookPanelLike>(this);
}

/** The findings list of the current notebook, for the sidebar. */
export class FindingsSection extends Widget {
  constructor(watcher: PIIWatcher) {
    super();
    this._watcher = watcher;
    this.addClass('jp-ProdDiscovery-findings');
    this.node.setAttribute('role', 'region');
    this.node.setAttribute(
      'aria-label',
      'PII findings in the current notebook'
    );
    const title = document.createElement('h3');
    title.className = 'jp-ProdDiscovery-sectionTitle';
    title.textContent = 'PII findings';
    this._list = document.createElement('ul');
    this._list.className = 'jp-ProdDiscovery-findingList';
    this.node.append(title, this._list);
    watcher.changed.connect((_, panel) => {
      if (panel === this._panel) {
        this._render();
      }
    });
    this._render();
  }

  /** Show the findings of this notebook (null: no notebook is current). */
  setPanel(panel: INotebookPanelLike | null): void {
    this._panel = panel;
    this._render();
  }

  private _render(): void {
    this._list.replaceChildren();
    const panel = this._panel;
    if (!panel) {
      this._list.append(this._item('Open a notebook to see its findings.'));
      return;
    }
    const findings = this._watcher.findings(panel);
    if (findings.length === 0) {
      this._list.append(this._item(`No PII finding in ${panel.context.path}.`));
      return;
    }
    findings.forEach(f => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'jp-ProdDiscovery-finding';
      button.dataset.action = f.action;
      button.textContent = `Cell ${f.cell + 1}, output ${f.output + 1}: ${describeMarker(f)}`;
      button.setAttribute(
        'aria-label',
        `Go to cell ${f.cell + 1}: ${describeMarker(f)}`
      );
      button.addEventListener('click', () => {
        panel.content.activeCellIndex = f.cell;
        const cell = panel.content.widgets[f.cell] as Widget | undefined;
        cell?.node.scrollIntoView({ block: 'center' });
        panel.activate();
      });
      li.append(button);
      this._list.append(li);
    });
  }

  private _item(text: string): HTMLElement {
    const li = document.createElement('li');
    li.className = 'jp-ProdDiscovery-empty';
    li.textContent = text;
    return li;
  }

  private _watcher: PIIWatcher;
  private _panel: INotebookPanelLike | null = null;
  private _list: HTMLElement;
}

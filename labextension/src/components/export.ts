import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { createExportJob, getExportJob, IExportJob, IGateResult } from '../api';

/** How often the dialog asks for the job's progress (milliseconds). */
const POLL_MS = 500;

/** Targets the server knows (export/targets/). */
export const EXPORT_TARGETS = ['papermill', 'airflow', 'dagster', 'kubernetes'];

/** Gates in the order the server runs them, shown as "pending" before the first run. */
const GATES = [
  'outputs_stripped',
  'no_pii',
  'no_secrets',
  'no_interactive',
  'dependencies_locked',
  'clean_run'
];

let counter = 0;

function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  const id = `jp-ProdDiscovery-export-${++counter}`;
  input.id = id;
  const wrap = document.createElement('div');
  wrap.className = 'jp-ProdDiscovery-field';
  const lab = document.createElement('label');
  lab.htmlFor = id;
  lab.textContent = label;
  wrap.append(lab, input);
  if (hint) {
    const small = document.createElement('small');
    small.textContent = hint;
    small.id = `${id}-hint`;
    input.setAttribute('aria-describedby', small.id);
    wrap.append(small);
  }
  return wrap;
}

/**
 * The body of the Export to Integration dialog: target, parameters and output, the gates as a
 * checklist with reasons, progress while the gates run (the clean run in papermill takes time),
 * the bundle location and signature when done, and an override with a reason per failed gate.
 *
 * The result comes right under the Run button, above the gates, and is scrolled into view when
 * the job ends: below six gates it was out of sight in the dialog. The gates stay listed (on a
 * refusal they carry the override fields).
 */
export class ExportForm extends Widget {
  constructor(path: string) {
    super();
    this._path = path;
    this.addClass('jp-ProdDiscovery-export');
    const intro = document.createElement('p');
    intro.textContent = `Export ${path} into a signed pipeline job bundle.`;

    this._targets = document.createElement('fieldset');
    this._targets.className = 'jp-ProdDiscovery-targets';
    const legend = document.createElement('legend');
    legend.textContent = 'Targets';
    this._targets.append(legend);
    EXPORT_TARGETS.forEach(t => {
      const lab = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = t;
      box.checked = t === 'papermill';
      lab.append(box, ` ${t}`);
      this._targets.append(lab);
    });

    this._params = document.createElement('textarea');
    this._params.rows = 3;
    this._params.value = '{}';
    this._params.className = 'jp-mod-styled';
    this._output = document.createElement('input');
    this._output.type = 'text';
    this._output.className = 'jp-mod-styled';
    this._output.placeholder = '.prod-discovery/exports/<name>-<time>';

    this._run = document.createElement('button');
    this._run.type = 'button';
    this._run.className =
      'jp-Button jp-mod-styled jp-mod-accept jp-ProdDiscovery-runExport';
    this._run.textContent = 'Run gates and export';
    this._run.addEventListener('click', () => void this.run());

    this._progress = document.createElement('div');
    this._progress.className = 'jp-ProdDiscovery-progress';
    this._progress.setAttribute('role', 'status');
    this._progress.setAttribute('aria-live', 'polite');
    this._progress.hidden = true;

    const gatesTitle = document.createElement('h4');
    gatesTitle.textContent = 'Promotion gates';
    this._gates = document.createElement('ul');
    this._gates.className = 'jp-ProdDiscovery-gates';
    this._gates.setAttribute('aria-label', 'Promotion gates');

    this._result = document.createElement('div');
    this._result.className = 'jp-ProdDiscovery-exportResult';
    this._result.setAttribute('role', 'status');

    this.node.append(
      intro,
      this._targets,
      field(
        'Parameters (JSON object)',
        this._params,
        'Injected into the parameters cell.'
      ),
      field(
        'Output folder (optional)',
        this._output,
        'Relative to the server root.'
      ),
      this._run,
      this._progress,
      this._result,
      gatesTitle,
      this._gates
    );
    this._renderGates(
      GATES.map(name => ({ name, state: 'pending', reason: 'not run yet' }))
    );
  }

  /** Run the export job with the form's values, showing each gate as it completes. */
  async run(): Promise<IExportJob | null> {
    let parameters: { [k: string]: unknown };
    try {
      parameters = JSON.parse(this._params.value || '{}');
      if (
        typeof parameters !== 'object' ||
        parameters === null ||
        Array.isArray(parameters)
      ) {
        throw new Error('not an object');
      }
    } catch {
      this._showError(
        'Parameters must be a JSON object, e.g. {"date": "2026-01-01"}.'
      );
      this._params.focus();
      return null;
    }
    const targets = Array.from(
      this._targets.querySelectorAll('input:checked')
    ).map(b => (b as HTMLInputElement).value);
    if (targets.length === 0) {
      this._showError('Choose at least one target.');
      return null;
    }
    const overrides: { [gate: string]: string } = {};
    this._gates
      .querySelectorAll<HTMLInputElement>(
        'input.jp-ProdDiscovery-overrideReason'
      )
      .forEach(input => {
        const box = input.parentElement?.querySelector<HTMLInputElement>(
          'input[type=checkbox]'
        );
        if (box?.checked && input.value.trim()) {
          overrides[input.dataset.gate ?? ''] = input.value.trim();
        }
      });
    this._run.disabled = true;
    this._result.replaceChildren();
    const started = Date.now();
    this._progress.hidden = false;
    const bar = document.createElement('progress');
    bar.setAttribute('aria-label', 'Export in progress');
    const label = document.createElement('span');
    this._progress.replaceChildren(bar, label);
    let current = 'outputs_stripped';
    const tick = () => {
      const s = Math.round((Date.now() - started) / 1000);
      label.textContent = ` Running gate ${current}… ${s}s`;
    };
    tick();
    const timer = window.setInterval(tick, 1000);
    let job: IExportJob | null = null;
    try {
      job = await createExportJob({
        path: this._path,
        targets,
        parameters,
        overrides,
        ...(this._output.value.trim()
          ? { output: this._output.value.trim() }
          : {})
      });
      current = this._renderProgress(job);
      while (!job.done) {
        await new Promise(resolve => window.setTimeout(resolve, POLL_MS));
        job = await getExportJob(job.id);
        current = this._renderProgress(job);
        tick();
      }
      this._showResult(job);
      return job;
    } catch (reason) {
      // The gates seen so far stay: they say how far the export got.
      this._showError(
        `Export failed: ${String((reason as Error).message ?? reason)}`
      );
      return null;
    } finally {
      window.clearInterval(timer);
      this._progress.hidden = true;
      this._run.disabled = false;
    }
  }

  /**
   * The gates finished so far with their results, the next one running, the rest pending;
   * returns the name of the running gate.
   */
  private _renderProgress(job: IExportJob): string {
    const done = job.gates.map(g => g.name);
    const rest = GATES.filter(name => !done.includes(name));
    const running = job.done ? '' : (rest[0] ?? '');
    this._renderGates([
      ...job.gates.map(g => this._row(g)),
      ...rest.map(name => ({
        name,
        state: name === running ? 'running' : 'pending',
        reason: name === running ? 'running…' : 'not run yet'
      }))
    ]);
    return running;
  }

  private _row(g: IGateResult): {
    name: string;
    state: string;
    reason: string;
    gate: IGateResult;
  } {
    return {
      name: g.name,
      state: gateState(g),
      reason: g.overridden
        ? `${g.reason} — overridden: ${g.override_reason}`
        : g.reason,
      gate: g
    };
  }

  private _showResult(job: IExportJob): void {
    this._renderGates(job.gates.map(g => this._row(g)));
    this._result.replaceChildren();
    this._result.dataset.exported = String(job.state === 'exported');
    this._result.dataset.state = job.state;
    if (job.state === 'exported') {
      const h = document.createElement('p');
      h.className = 'jp-ProdDiscovery-ok';
      h.textContent = 'Exported and signed.';
      const dl = document.createElement('dl');
      const add = (k: string, v: string) => {
        const dt = document.createElement('dt');
        dt.textContent = k;
        const dd = document.createElement('dd');
        dd.textContent = v;
        dd.className = `jp-ProdDiscovery-result-${k.split(' ')[0].toLowerCase()}`;
        dl.append(dt, dd);
        return dd;
      };
      add('Bundle', job.bundle ?? '');
      add('Manifest sha256', job.manifest_sha256 ?? '');
      add(
        'Signer',
        job.signer === 'prod-discovery-service'
          ? 'the trusted service (it ran every gate itself)'
          : (job.signer ?? 'unknown')
      );
      const sig = job.signature;
      const signature = add(
        'Signature',
        sig
          ? `${sig.algorithm}, key ${sig.key_id}` +
              (sig.signer ? `, ${sig.signer}` : '') +
              ` (${sig.file})` +
              (sig.verification ? `: ${sig.verification}` : '')
          : 'see the bundle'
      );
      if (sig) {
        signature.dataset.algorithm = sig.algorithm;
        signature.dataset.verified = String(sig.verified ?? false);
      }
      const check = job.verification;
      const verified = add(
        'Verification',
        check
          ? check.files_match_manifest
            ? 'every file matches the signed manifest; Integration checks the signature ' +
              'with the public key (jupyter prod-discovery export verify)'
            : `files do not match the manifest: ${check.problems.join('; ')}`
          : 'not checked here: run jupyter prod-discovery export verify'
      );
      verified.dataset.ok = String(check?.files_match_manifest ?? false);
      this._result.append(h, dl);
    } else if (job.state === 'refused') {
      const p = document.createElement('p');
      p.className = 'jp-ProdDiscovery-bad';
      p.textContent =
        `Refused: ${job.message || 'a gate failed'}. ` +
        'Fix the notebook, or override a failed gate with a reason where policy allows.';
      this._result.append(p);
    } else {
      this._showError(`Export failed: ${job.message || 'unknown error'}`);
      return;
    }
    this._reveal();
  }

  /** Scroll the dialog so that the result is in sight (the nearest edge: no jump if it is). */
  private _reveal(): void {
    // The job ended: the progress line above the result goes first, or it would shift it.
    this._progress.hidden = true;
    this._result.scrollIntoView?.({ block: 'nearest' });
  }

  private _showError(message: string): void {
    this._result.replaceChildren();
    const p = document.createElement('p');
    p.className = 'jp-ProdDiscovery-bad';
    p.setAttribute('role', 'alert');
    p.textContent = message;
    this._result.append(p);
    this._reveal();
  }

  private _renderGates(
    gates: { name: string; state: string; reason: string; gate?: IGateResult }[]
  ): void {
    this._gates.replaceChildren();
    gates.forEach(g => {
      const li = document.createElement('li');
      li.className = 'jp-ProdDiscovery-gate';
      li.dataset.gate = g.name;
      li.dataset.state = g.state;
      const mark = document.createElement('span');
      mark.className = 'jp-ProdDiscovery-gateMark';
      mark.textContent =
        {
          passed: '✓',
          failed: '✗',
          skipped: '–',
          overridden: '!',
          pending: '○',
          running: '…'
        }[g.state] ?? '?';
      mark.setAttribute('aria-hidden', 'true');
      const name = document.createElement('strong');
      name.textContent = `${g.name} (${g.state})`;
      const reason = document.createElement('span');
      reason.className = 'jp-ProdDiscovery-gateReason';
      reason.textContent = g.reason;
      li.append(mark, name, reason);
      if (g.state === 'failed') {
        const wrap = document.createElement('div');
        wrap.className = 'jp-ProdDiscovery-override';
        const box = document.createElement('input');
        box.type = 'checkbox';
        box.id = `jp-ProdDiscovery-override-${g.name}-${++counter}`;
        const lab = document.createElement('label');
        lab.htmlFor = box.id;
        lab.textContent = 'Override with a reason';
        const text = document.createElement('input');
        text.type = 'text';
        text.className = 'jp-mod-styled jp-ProdDiscovery-overrideReason';
        text.dataset.gate = g.name;
        text.setAttribute('aria-label', `Reason for overriding ${g.name}`);
        text.disabled = true;
        box.addEventListener('change', () => {
          text.disabled = !box.checked;
          if (box.checked) {
            text.focus();
          }
        });
        wrap.append(box, lab, text);
        li.append(wrap);
      }
      this._gates.append(li);
    });
  }

  private _path: string;
  private _targets: HTMLFieldSetElement;
  private _params: HTMLTextAreaElement;
  private _output: HTMLInputElement;
  private _run: HTMLButtonElement;
  private _progress: HTMLElement;
  private _gates: HTMLElement;
  private _result: HTMLElement;
}

function gateState(g: IGateResult): string {
  if (g.overridden) {
    return 'overridden';
  }
  if (g.skipped) {
    return 'skipped';
  }
  return g.passed ? 'passed' : 'failed';
}

/**
 * The dialog, with Enter in a text field running the export (the plain dialog would close:
 * its only button, Close, is the default one).
 */
class ExportDialog extends Dialog<unknown> {
  constructor(form: ExportForm) {
    super({
      title: 'Export to Integration',
      body: form,
      buttons: [Dialog.cancelButton({ label: 'Close' })],
      hasClose: true
    });
    this._form = form;
    this.addClass('jp-ProdDiscovery-exportDialog');
  }

  handleEvent(event: Event): void {
    const target = event.target;
    if (
      event.type === 'keydown' &&
      (event as KeyboardEvent).key === 'Enter' &&
      target instanceof HTMLInputElement &&
      target.type === 'text' &&
      this._form.node.contains(target)
    ) {
      event.stopPropagation();
      event.preventDefault();
      void this._form.run();
      return;
    }
    super.handleEvent(event);
  }

  private _form: ExportForm;
}

/** Open the dialog for the notebook at ``path`` (saved first by the caller). */
export function showExportDialog(path: string): Promise<unknown> {
  return new ExportDialog(new ExportForm(path)).launch();
}

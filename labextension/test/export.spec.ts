import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// The REST client is the form's collaborator: the server's answers are given here.
const api = vi.hoisted(() => ({
  createExportJob: vi.fn(),
  getExportJob: vi.fn()
}));
vi.mock('../src/api', () => api);
vi.mock('@jupyterlab/apputils', () => ({
  Dialog: class {
    static cancelButton(options: unknown) {
      return options;
    }
  }
}));

import { ExportForm } from '../src/components/export';

const GATES = [
  'outputs_stripped',
  'no_pii',
  'no_secrets',
  'no_interactive',
  'dependencies_locked',
  'clean_run'
];

function gate(name: string, passed = true) {
  return {
    name,
    passed,
    skipped: false,
    overridden: false,
    reason: passed ? 'ok' : 'US_SSN x1 in cell 1'
  };
}

describe('ExportForm', () => {
  let scrolled: { node: Element; options: unknown }[];

  beforeEach(() => {
    api.createExportJob.mockReset();
    scrolled = [];
    // jsdom lays nothing out and has no scrollIntoView: record who asks to be revealed.
    (Element.prototype as any).scrollIntoView = function (options: unknown) {
      scrolled.push({ node: this as Element, options });
    };
  });
  afterEach(() => {
    delete (Element.prototype as any).scrollIntoView;
  });

  it('shows the signed bundle above the gates and scrolls it into view', async () => {
    api.createExportJob.mockResolvedValue({
      id: 'j1',
      state: 'exported',
      done: true,
      gates: GATES.map(name => gate(name)),
      bundle: '.prod-discovery/exports/clean-1',
      manifest_sha256: 'ab'.repeat(32),
      signer: 'prod-discovery-service',
      signature: {
        algorithm: 'ed25519',
        key_id: 'k1',
        file: 'signature.json'
      },
      verification: { files_match_manifest: true, problems: [] }
    });
    const form = new ExportForm('clean.ipynb');
    const job = await form.run();
    expect(job?.state).toBe('exported');

    const result = form.node.querySelector(
      '.jp-ProdDiscovery-exportResult'
    ) as HTMLElement;
    const gates = form.node.querySelector('.jp-ProdDiscovery-gates')!;
    const run = form.node.querySelector('.jp-ProdDiscovery-runExport')!;
    expect(result.dataset.exported).toBe('true');
    expect(
      result.querySelector('.jp-ProdDiscovery-result-bundle')?.textContent
    ).toBe('.prod-discovery/exports/clean-1');
    // Under the Run button, before the gate list: in sight where the user clicked.
    expect(
      run.compareDocumentPosition(result) & Node.DOCUMENT_POSITION_FOLLOWING
    ).toBeTruthy();
    expect(
      result.compareDocumentPosition(gates) & Node.DOCUMENT_POSITION_FOLLOWING
    ).toBeTruthy();
    expect(scrolled).toEqual([{ node: result, options: { block: 'nearest' } }]);
    expect(
      (form.node.querySelector('.jp-ProdDiscovery-progress') as HTMLElement)
        .hidden
    ).toBe(true);
    expect(gates.querySelectorAll('.jp-ProdDiscovery-gate')).toHaveLength(6);
  });

  it('keeps the gate list with the override on a refusal, the refusal in view', async () => {
    api.createExportJob.mockResolvedValue({
      id: 'j2',
      state: 'refused',
      done: true,
      message: 'gate no_pii failed',
      gates: GATES.map(name => gate(name, name !== 'no_pii'))
    });
    const form = new ExportForm('pii.ipynb');
    await form.run();

    const result = form.node.querySelector(
      '.jp-ProdDiscovery-exportResult'
    ) as HTMLElement;
    expect(result.dataset.exported).toBe('false');
    expect(result.textContent).toContain('Refused: gate no_pii failed');
    const failed = form.node.querySelector(
      '.jp-ProdDiscovery-gate[data-gate="no_pii"]'
    ) as HTMLElement;
    expect(failed.dataset.state).toBe('failed');
    expect(
      failed.querySelector('input.jp-ProdDiscovery-overrideReason')
    ).not.toBeNull();
    expect(
      form.node.querySelectorAll('.jp-ProdDiscovery-gate[data-state="passed"]')
    ).toHaveLength(5);
    expect(scrolled.map(s => s.node)).toEqual([result]);
  });

  it('reveals an error too, without calling the server on bad parameters', async () => {
    const form = new ExportForm('clean.ipynb');
    (form.node.querySelector('textarea') as HTMLTextAreaElement).value = '[1]';
    expect(await form.run()).toBeNull();
    expect(api.createExportJob).not.toHaveBeenCalled();
    const result = form.node.querySelector('.jp-ProdDiscovery-exportResult')!;
    expect(result.querySelector('[role=alert]')?.textContent).toContain(
      'Parameters must be a JSON object'
    );
    expect(scrolled.map(s => s.node)).toEqual([result]);
  });
});

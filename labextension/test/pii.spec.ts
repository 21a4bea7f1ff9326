import { describe, expect, it, vi } from 'vitest';

vi.mock('@jupyterlab/apputils', () => ({
  Notification: { warning: vi.fn(), info: vi.fn() }
}));

import {
  describeEntities,
  describeMarker,
  markerOf,
  parseSummary
} from '../src/components/pii';

describe('markerOf', () => {
  it('reads the marker the server put on a rich output', () => {
    const output = {
      output_type: 'execute_result',
      data: { 'text/plain': "'<EMAIL_ADDRESS>'" },
      metadata: {
        prod_discovery: { action: 'redact', entities: { EMAIL_ADDRESS: 1 } }
      }
    };
    expect(markerOf(output)).toEqual({
      action: 'redact',
      entities: { EMAIL_ADDRESS: 1 }
    });
  });

  it('trusts the message metadata of a stream, never its text', () => {
    // A kernel can print placeholders: only the server's metadata marks an output.
    const output = {
      output_type: 'stream',
      name: 'stdout',
      text: 'ssn <US_SSN>, mail <EMAIL_ADDRESS> and <EMAIL_ADDRESS>\n'
    };
    expect(markerOf(output)).toBeNull();
    const marker = { action: 'redact', entities: { US_SSN: 1 } };
    expect(markerOf(output, { prod_discovery: marker })).toEqual(marker);
  });

  it('finds nothing in a clean output or in unknown angle brackets', () => {
    expect(
      markerOf({ output_type: 'stream', name: 'stdout', text: 'total 45\n' })
    ).toBeNull();
    expect(
      markerOf({
        output_type: 'stream',
        name: 'stdout',
        text: '<NOT_A_TYPE>\n'
      })
    ).toBeNull();
  });
});

describe('summaries', () => {
  it('parses and describes entity counts, never values', () => {
    expect(parseSummary('US_SSN x1, EMAIL_ADDRESS x2, US_SSN x3')).toEqual({
      US_SSN: 4,
      EMAIL_ADDRESS: 2
    });
    expect(describeEntities({ US_SSN: 1, EMAIL_ADDRESS: 2 })).toBe(
      'EMAIL_ADDRESS ×2, US_SSN ×1'
    );
    expect(describeMarker({ action: 'block', entities: {} })).toBe(
      'Blocked by the PII guard: unscannable output'
    );
  });
});

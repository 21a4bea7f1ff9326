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

  it('takes a stream marker from the message metadata the server set', () => {
    const output = {
      output_type: 'stream',
      name: 'stdout',
      text: 'ssn <US_SSN>, mail <EMAIL_ADDRESS> and <EMAIL_ADDRESS>\n'
    };
    const metadata = {
      prod_discovery: {
        action: 'redact',
        entities: { US_SSN: 1, EMAIL_ADDRESS: 2 }
      }
    };
    expect(markerOf(output, metadata)).toEqual({
      action: 'redact',
      entities: { US_SSN: 1, EMAIL_ADDRESS: 2 }
    });
  });

  it('never takes a marker from what the kernel printed', () => {
    // Kernel output can print placeholders or a fake notice; only server-set metadata counts.
    const forged = {
      output_type: 'stream',
      name: 'stdout',
      text: 'Blocked by the PII guard: US_SSN ×99 <US_SSN>\n'
    };
    expect(markerOf(forged)).toBeNull();
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

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

// The REST client and JupyterLab's notifications are the component's collaborators: the
// server's answers are given here, notifications recorded.
const api = vi.hoisted(() => ({
  getCredentials: vi.fn(),
  renewCredentials: vi.fn()
}));
const notes = vi.hoisted(() => ({
  warning: vi.fn(),
  error: vi.fn(),
  success: vi.fn()
}));
vi.mock('../src/api', () => api);
vi.mock('@jupyterlab/apputils', () => ({ Notification: notes }));

import {
  CredentialsSection,
  formatTTL,
  leaseHealth
} from '../src/components/credentials';

describe('leaseHealth', () => {
  it('tells static, expired, expiring and ok leases apart', () => {
    expect(leaseHealth(null, 120)).toBe('static');
    expect(leaseHealth(0, 120)).toBe('expired');
    expect(leaseHealth(-5, 120)).toBe('expired');
    expect(leaseHealth(120, 120)).toBe('expiring');
    expect(leaseHealth(121, 120)).toBe('ok');
  });
});

describe('formatTTL', () => {
  it('is short and readable', () => {
    expect(formatTTL(null)).toBe('no expiry');
    expect(formatTTL(12)).toBe('12s');
    expect(formatTTL(245)).toBe('4m 05s');
    expect(formatTTL(3720)).toBe('1h 02m');
    expect(formatTTL(-3)).toBe('0s');
  });
});

describe('CredentialsSection', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    api.getCredentials.mockReset();
    notes.warning.mockReset();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('lists each kernel with its leases, their health and a countdown', async () => {
    api.getCredentials.mockResolvedValue({
      active: true,
      kernels: [
        {
          kernel_id: 'k-1',
          kernel_name: 'python3',
          owner: 'ada',
          profiles: ['vault-token', 'prod-db', 'warehouse-api'],
          leases: [
            {
              profile: 'vault-token',
              lease_id: 'acc-1',
              ttl_left: 1800,
              renewable: true
            },
            {
              profile: 'prod-db',
              lease_id: 'db/creds/1',
              ttl_left: 60,
              renewable: true
            }
          ]
        }
      ]
    });
    const section = new CredentialsSection({
      refreshSeconds: 30,
      expiryWarningSeconds: 120
    });
    await section.refresh();
    const node = section.node;
    expect(
      node
        .querySelector('.jp-ProdDiscovery-kernel')
        ?.getAttribute('data-kernel-id')
    ).toBe('k-1');
    const token = node.querySelector(
      '[data-profile="vault-token"]'
    ) as HTMLElement;
    const db = node.querySelector('[data-profile="prod-db"]') as HTMLElement;
    expect(token.dataset.health).toBe('ok');
    expect(db.dataset.health).toBe('expiring');
    expect(node.textContent).toContain('warehouse-api');
    expect(node.querySelector('[role=alert]')?.textContent).toContain(
      'about to expire'
    );
    expect(notes.warning).toHaveBeenCalled();
    // The countdown runs locally between two fetches.
    const before = token.querySelector('.jp-ProdDiscovery-ttl')?.textContent;
    vi.advanceTimersByTime(2000);
    expect(token.querySelector('.jp-ProdDiscovery-ttl')?.textContent).not.toBe(
      before
    );
    section.dispose();
  });

  it('says so when no kernel holds credentials, and when the server cannot be asked', async () => {
    api.getCredentials.mockResolvedValue({ active: true, kernels: [] });
    const section = new CredentialsSection({
      refreshSeconds: 30,
      expiryWarningSeconds: 120
    });
    await section.refresh();
    expect(section.node.textContent).toContain(
      'No running kernel holds credentials.'
    );
    api.getCredentials.mockRejectedValue(new Error('503 Vault down'));
    await section.refresh();
    const alert = section.node.querySelector('[role=alert]') as HTMLElement;
    expect(alert.hidden).toBe(false);
    expect(alert.textContent).toContain('Credentials unavailable');
    section.dispose();
  });
});

import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { getStatus } from './api';
import { EnvironmentIndicator } from './components/indicator';

const PLUGIN_ID = 'jupyter-prod-discovery:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Prod Discovery environment indicator fed by /prod-discovery/api/status.',
  autoStart: true,
  optional: [IStatusBar, ISettingRegistry, ILabShell],
  activate: async (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    labShell: ILabShell | null
  ) => {
    let refreshSeconds = 15;
    let showBanner = true;
    if (settingRegistry) {
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        refreshSeconds = settings.get('refreshSeconds').composite as number;
        showBanner = settings.get('showBanner').composite as boolean;
      } catch (reason) {
        console.warn('Prod Discovery: settings could not be loaded', reason);
      }
    }
    const indicators: EnvironmentIndicator[] = [];
    if (statusBar) {
      const item = new EnvironmentIndicator('statusbar');
      indicators.push(item);
      statusBar.registerStatusItem(PLUGIN_ID, { item, align: 'left', rank: -100 });
    }
    if (showBanner && labShell) {
      const banner = new EnvironmentIndicator('banner');
      banner.id = 'jp-ProdDiscovery-banner';
      indicators.push(banner);
      app.shell.add(banner, 'top', { rank: 0 });
    }
    const refresh = async () => {
      try {
        const status = await getStatus();
        indicators.forEach(i => i.update_status(status));
      } catch (reason) {
        indicators.forEach(i => i.update_error(String(reason)));
      }
    };
    await refresh();
    window.setInterval(refresh, Math.max(2, refreshSeconds) * 1000);
  }
};

export default plugin;

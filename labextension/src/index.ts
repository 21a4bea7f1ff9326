import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ToolbarButton } from '@jupyterlab/ui-components';

import { getStatus } from './api';
import { AuditViewer } from './components/audit';
import { showExportDialog } from './components/export';
import { EnvironmentIndicator } from './components/indicator';
import {
  INotebookPanelLike,
  isNotebookPanel,
  PIIWatcher
} from './components/pii';
import { ProdDiscoverySidebar, shieldIcon } from './components/sidebar';

const PLUGIN_ID = 'jupyter-prod-discovery:plugin';

/** Settings of the one schema (schema/plugin.json), with their defaults. */
interface ISettings {
  refreshSeconds: number;
  showBanner: boolean;
  credentialsRefreshSeconds: number;
  expiryWarningSeconds: number;
  piiNotifications: boolean;
}

const DEFAULTS: ISettings = {
  refreshSeconds: 15,
  showBanner: true,
  credentialsRefreshSeconds: 10,
  expiryWarningSeconds: 120,
  piiNotifications: true
};

async function loadSettings(
  registry: ISettingRegistry | null
): Promise<ISettings> {
  const out = { ...DEFAULTS };
  if (!registry) {
    return out;
  }
  try {
    const settings = await registry.load(PLUGIN_ID);
    (Object.keys(DEFAULTS) as (keyof ISettings)[]).forEach(key => {
      const value = settings.get(key).composite;
      if (value !== undefined && value !== null) {
        (out as any)[key] = value;
      }
    });
  } catch (reason) {
    console.warn('Prod Discovery: settings could not be loaded', reason);
  }
  return out;
}

export const CommandIDs = {
  export: 'prod-discovery:export',
  audit: 'prod-discovery:open-audit',
  sidebar: 'prod-discovery:show-sidebar'
};

/** The environment indicator: status bar item and banner. */
const indicatorPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Prod Discovery environment indicator fed by /prod-discovery/api/status.',
  autoStart: true,
  optional: [IStatusBar, ISettingRegistry, ILabShell],
  activate: async (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    labShell: ILabShell | null
  ) => {
    const settings = await loadSettings(settingRegistry);
    const indicators: EnvironmentIndicator[] = [];
    if (statusBar) {
      const item = new EnvironmentIndicator('statusbar');
      indicators.push(item);
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: -100
      });
    }
    if (settings.showBanner && labShell) {
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
    window.setInterval(refresh, Math.max(2, settings.refreshSeconds) * 1000);
  }
};

/**
 * The working tools: credentials and PII findings in the sidebar, PII markers and
 * notifications on notebooks, Export to Integration, and the audit viewer for compliance.
 */
const toolsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-prod-discovery:tools',
  description:
    'Prod Discovery credentials panel, PII findings, export dialog and audit viewer.',
  autoStart: true,
  optional: [ILabShell, ICommandPalette, ISettingRegistry],
  activate: async (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const settings = await loadSettings(settingRegistry);
    const watcher = new PIIWatcher({ notify: settings.piiNotifications });
    const sidebar = new ProdDiscoverySidebar(
      {
        refreshSeconds: settings.credentialsRefreshSeconds,
        expiryWarningSeconds: settings.expiryWarningSeconds
      },
      watcher
    );
    app.shell.add(sidebar, 'left', { rank: 250 });

    const current = (): INotebookPanelLike | null => {
      const w = app.shell.currentWidget;
      return isNotebookPanel(w) ? w : null;
    };
    const exportPanel = async (panel: INotebookPanelLike) => {
      if (panel.context.model.dirty) {
        try {
          await (panel.context as any).save();
        } catch (reason) {
          // e.g. the save guard refused: the export checks the last saved version.
          Notification.warning(
            `Could not save ${panel.context.path} (${String(reason)}): exporting the saved version.`,
            { autoClose: 8000 }
          );
        }
      }
      await showExportDialog(panel.context.path);
    };

    app.commands.addCommand(CommandIDs.export, {
      label: 'Export to Integration…',
      caption:
        'Export the current notebook into a signed pipeline job (promotion gates first)',
      icon: shieldIcon,
      isEnabled: () => current() !== null,
      execute: async () => {
        const panel = current();
        if (panel) {
          await exportPanel(panel);
        }
      }
    });
    app.commands.addCommand(CommandIDs.sidebar, {
      label: 'Show Prod Discovery credentials and PII findings',
      execute: () => app.shell.activateById(sidebar.id)
    });
    palette?.addItem({
      command: CommandIDs.export,
      category: 'Prod Discovery'
    });
    palette?.addItem({
      command: CommandIDs.sidebar,
      category: 'Prod Discovery'
    });

    // Every notebook: watched for PII markers, and an export button in its toolbar.
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: any) => {
        if (!isNotebookPanel(panel)) {
          return;
        }
        watcher.watch(panel);
        const button = new ToolbarButton({
          label: 'Export',
          icon: shieldIcon,
          tooltip: 'Export to Integration',
          className: 'jp-ProdDiscovery-exportButton',
          onClick: () => void exportPanel(panel)
        });
        (panel as any).toolbar.insertItem(10, 'prodDiscoveryExport', button);
        return button;
      }
    });
    const follow = () => {
      const panel = current();
      if (panel) {
        sidebar.findings.setPanel(panel);
      } else if (labShell && !labShell.currentWidget) {
        sidebar.findings.setPanel(null);
      }
      app.commands.notifyCommandChanged(CommandIDs.export);
    };
    labShell?.currentChanged.connect(follow);

    // The audit viewer exists only for users the server calls compliance (it refuses others).
    let allowed = false;
    try {
      allowed = (await getStatus()).permissions?.audit === true;
    } catch (reason) {
      console.warn(
        'Prod Discovery: status unavailable, audit viewer hidden',
        reason
      );
    }
    sidebar.setAuditAllowed(allowed);
    if (!allowed) {
      return;
    }
    let viewer: AuditViewer | null = null;
    app.commands.addCommand(CommandIDs.audit, {
      label: 'Open the audit trail',
      caption: 'Browse and verify the Prod Discovery audit trail (compliance)',
      execute: async () => {
        if (!viewer || viewer.isDisposed) {
          viewer = new AuditViewer();
          app.shell.add(viewer, 'main');
        }
        app.shell.activateById(viewer.id);
        await viewer.refresh();
      }
    });
    palette?.addItem({ command: CommandIDs.audit, category: 'Prod Discovery' });
    sidebar.offerAudit(() => void app.commands.execute(CommandIDs.audit));
  }
};

export default [indicatorPlugin, toolsPlugin];

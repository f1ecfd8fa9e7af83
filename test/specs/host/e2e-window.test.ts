// The window end to end: Debian's Chromium (playwright-core) on `berth serve` with a
// temporary BERTH_HOME, the real services, addon and KVM. Creates a VM in the New Virtual
// Machine wizard (the test guest, `echo`, test-exit port, a new virtual hard disk and a NAT
// adapter), changes its network adapter in Settings (restricted, a port forward), starts it,
// sees `echo: ready` in Connect and types into it, pauses, resumes and resets it, shuts it
// down (the echo guest ignores the power button: the dialog says so and offers Turn Off),
// turns it off, takes a checkpoint, applies it, exports the VM and the checkpoint, reverts a
// change, renames and deletes checkpoints, renames and deletes the VM, and runs axe-core over the window and the dialogs. Screenshots go to test-artifacts/window/.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Locator, Page } from 'playwright-core';

import { createHttpBerthApi } from '../../../app/api/bridge-http';
import { kvmHere } from '../../lab/lab';
import { cleanBerthHome, makeBerthHome } from '../../support/berth-home';
import { chromiumMissing, launchChromium, type LaunchedBrowser } from '../../support/chromium';
import { repoRoot, testGuestPath } from '../../support/guest';
import { startServe, type Serve } from '../../support/serve';

const artifacts = join(repoRoot, 'test-artifacts', 'window');
const rendererBuilt = existsSync(join(repoRoot, 'dist', 'renderer', 'index.html'));
const skip = chromiumMissing() ?? (rendererBuilt ? undefined : 'dist/renderer is not built (npm run build:renderer)');

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
}

// axe-core in the page; returns the serious and critical violations.
async function axe(page: Page, context: string): Promise<string[]> {
  // Evaluated over the DevTools protocol: the page's CSP (scripts from self only) stays on.
  await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const violations = (await page.evaluate(`(async () => {
    const r = await axe.run(${JSON.stringify(context)}, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  })()`)) as { id: string; impact: string; help: string; nodes: string[] }[];
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.join(', ')})`);
}

// Through the lab, every request crosses a port forward into a VM under emulation: waits
// for what the guest does get longer there (the steps are the same).
const slow = (ms: number): number => (kvmHere() ? ms : ms * 4);

const row = (page: Page, name: string) =>
  page.locator('.vm-row', { has: page.locator('.cell.name', { hasText: name }) });
// A host port for the NAT adapter's forward, unlikely to be taken (the VM starts with it).
const forwardPort = 20000 + (process.pid % 20000);
// Closes a console window left open, so a failed step does not block the ones after it.
const closeConsole = async (win: Locator): Promise<void> => {
  if (await win.isVisible()) await win.getByRole('button', { name: 'Close' }).click();
};
const action = (page: Page, section: string, id: string) =>
  page.locator(`section[aria-label="Actions for ${section}"] button[data-action="${id}"]`);

describe('the window in Chromium on berth serve', { skip }, () => {
  let home: string;
  let serve: Serve;
  let browser: LaunchedBrowser;
  let page: Page;
  const consoleErrors: string[] = [];
  // Inside the lab the services see the project read-write and their own /tmp: the export
  // goes where this host can check it, the data root stays on the serving side.
  const exportDir = join(artifacts, `export-${process.pid}`);

  before(async () => {
    mkdirSync(artifacts, { recursive: true });
    rmSync(exportDir, { recursive: true, force: true });
    mkdirSync(exportDir);
    home = kvmHere() ? makeBerthHome('e2e') : '/tmp/berth-e2e';
    serve = await startServe(home);
    browser = await launchChromium();
    page = await browser.context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
  });

  after(async () => {
    await browser?.close();
    await serve?.stop();
    if (serve?.where === 'host') await cleanBerthHome(home);
    rmSync(exportDir, { recursive: true, force: true });
  });

  it('opens with the host in the navigation pane and an empty list', async () => {
    await page.goto(serve.url);
    await page.getByRole('grid', { name: 'Virtual Machines' }).waitFor();
    await page.getByText('No virtual machines were found on this server.').waitFor();
    assert.match(await page.locator('.nav-host').innerText(), /\S/);
    assert.doesNotMatch(page.url(), /token=/, 'the token is removed from the address bar');
    await shot(page, '01-empty');
  });

  it('creates a VM in the New Virtual Machine wizard', async () => {
    await page.locator('button[data-action="new-vm"]').click();
    const wizard = page.getByRole('dialog', { name: 'New Virtual Machine Wizard' });
    await wizard.waitFor();
    await wizard.getByRole('button', { name: 'Specify Name and Location' }).click();
    await wizard.getByLabel('Name:').fill('e2e-echo');
    await wizard.getByRole('button', { name: 'Next >' }).click();
    // Specify Generation: the test guest is a kernel booted directly.
    await wizard.getByLabel('Linux kernel booted directly').check();
    await wizard.getByRole('button', { name: 'Next >' }).click();
    await wizard.getByLabel('Startup memory (MB):').fill('64');
    // Finish without a kernel: the wizard keeps us on the boot page and says why.
    await wizard.getByRole('button', { name: 'Finish' }).click();
    await wizard.getByText('Kernel: is required').waitFor();
    assert.equal(await wizard.locator('[aria-current="step"]').innerText(), 'Installation Options');
    await wizard.getByLabel('Kernel:', { exact: true }).fill(testGuestPath());
    await wizard.getByLabel('Kernel command line:').fill('echo');
    await wizard.getByLabel('Enable the test-exit port (0xf4)').check();
    await wizard.getByRole('button', { name: 'Configure Networking' }).click();
    await wizard.getByLabel('Connection:').selectOption('nat');
    await wizard.getByRole('button', { name: 'Connect Virtual Hard Disk' }).click();
    await wizard.getByLabel('Create a virtual hard disk').check();
    await wizard.getByLabel('Size (GB):').fill('1');
    await shot(page, '02-new-vm-wizard');
    const violations = await axe(page, '.dialog');
    assert.deepEqual(violations, [], 'no serious or critical axe violations in the wizard');
    await wizard.getByRole('button', { name: 'Summary' }).click();
    await wizard.getByText('64 MB').waitFor();
    await wizard.getByRole('button', { name: 'Finish' }).click();
    await wizard.waitFor({ state: 'detached' });
    await row(page, 'e2e-echo').waitFor();
    assert.equal(await row(page, 'e2e-echo').getAttribute('data-state'), 'Off');
  });

  it('Settings shows the new disk, and changes the network adapter: restricted, a port forward', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'settings').click();
    const settings = page.getByRole('dialog', { name: /^Settings for e2e-echo/ });
    await settings.getByRole('button', { name: /^Hard Drive/ }).click();
    assert.match(await settings.getByLabel('Virtual hard disk:').inputValue(), /\.(vhdx|qcow2|vhd|raw|img)$/);
    await settings.getByRole('button', { name: /^Network Adapter/ }).click();
    await settings.getByLabel('Restricted: the guest cannot').check();
    await settings.getByRole('button', { name: 'Add Port Forward' }).click();
    await settings.getByLabel('Host port').fill(String(forwardPort));
    await settings.getByLabel('Guest port').fill('7');
    await shot(page, '02b-settings-network');
    await settings.getByRole('button', { name: 'OK' }).click();
    await settings.waitFor({ state: 'detached', timeout: slow(20_000) });
    // Opened again, Settings shows what was saved.
    await action(page, 'e2e-echo', 'settings').click();
    await settings.getByRole('button', { name: /^Network Adapter/ }).click();
    assert.equal(await settings.getByLabel('Host port').inputValue(), String(forwardPort));
    assert.equal(await settings.getByLabel('Restricted: the guest cannot').isChecked(), true);
    await settings.getByRole('button', { name: 'Cancel' }).click();
    await settings.waitFor({ state: 'detached' });
  });

  it('starts it from the Actions pane, enabling the actions of a running VM', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'start').click();
    await page.locator('.vm-row[data-state="Running"]').waitFor({ timeout: slow(30_000) });
    await page
      .locator('section[aria-label="Actions for e2e-echo"] button[data-action="turn-off"]:not([disabled])')
      .waitFor();
    assert.equal(await action(page, 'e2e-echo', 'start').isDisabled(), true);
    assert.equal(await action(page, 'e2e-echo', 'pause').isEnabled(), true);
    assert.equal(await action(page, 'e2e-echo', 'delete').isDisabled(), true);
    // Stats arrive by push: the uptime column fills in.
    await page
      .locator('.vm-row[data-state="Running"] [role="gridcell"]:nth-child(5)', { hasText: /\d\d:\d\d:\d\d/ })
      .waitFor({ timeout: slow(10_000) });
    await shot(page, '03-running');
  });

  it('Connect shows the guest console and typing reaches the guest', async () => {
    await action(page, 'e2e-echo', 'connect').click();
    const win = page.getByRole('dialog', { name: /Virtual Machine Connection/ });
    await win.waitFor();
    const screen = win.locator('.xterm-rows');
    await win.locator('.xterm-rows', { hasText: 'echo: ready' }).waitFor({ timeout: slow(15_000) });
    await win.locator('.xterm-host').click();
    await page.keyboard.type('hello from chromium');
    await win.locator('.xterm-rows', { hasText: 'hello from chromium' }).waitFor({ timeout: slow(10_000) });
    assert.match(await screen.innerText(), /echo: ready[\s\S]*hello from chromium/);
    await shot(page, '04-connect');
    assert.deepEqual(await axe(page, '.console-window .console-toolbar'), []);
    await win.getByRole('button', { name: 'Close' }).click();
  });

  it('Pause freezes it and Resume lets it go on: what is typed afterwards is echoed', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'pause').click();
    await page.locator('.vm-row[data-state="Paused"]').waitFor({ timeout: slow(20_000) });
    // Resume takes Pause's place while the VM is paused.
    assert.equal(await action(page, 'e2e-echo', 'pause').count(), 0);
    await shot(page, '04c-paused');
    await action(page, 'e2e-echo', 'resume').click();
    await page.locator('.vm-row[data-state="Running"]').waitFor({ timeout: slow(20_000) });
    await action(page, 'e2e-echo', 'connect').click();
    const win = page.getByRole('dialog', { name: /Virtual Machine Connection/ });
    try {
      // Typed at once: keys typed while the console attaches are sent once it has.
      await win.locator('.xterm-host').click();
      await page.keyboard.type('after resume');
      await win.locator('.xterm-rows', { hasText: 'after resume' }).waitFor({ timeout: slow(10_000) });
    } finally {
      await closeConsole(win);
    }
  });

  it('Reset restarts the guest: its console shows a second boot', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'reset').click();
    await action(page, 'e2e-echo', 'connect').click();
    const win = page.getByRole('dialog', { name: /Virtual Machine Connection/ });
    // The console keeps what the first boot printed; the guest prints its banner again.
    const boots = async (): Promise<number> =>
      ((await win.locator('.xterm-rows').innerText()).match(/echo: ready/g) ?? []).length;
    try {
      const deadline = Date.now() + slow(20_000);
      while ((await boots()) < 2 && Date.now() < deadline) await page.waitForTimeout(250);
      assert.equal(await boots(), 2, 'the guest booted a second time');
      assert.equal(await row(page, 'e2e-echo').getAttribute('data-state'), 'Running');
    } finally {
      await closeConsole(win);
    }
  });

  it('Shut Down waits for the guest, which ignores the power button, then offers Turn Off', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'shut-down').click();
    const confirm = page.getByRole('dialog', { name: 'Shut Down Machine' });
    await confirm.getByRole('button', { name: 'Shut Down' }).click();
    await confirm.getByText('Waiting for the guest operating system to shut down...').waitFor();
    // The services wait 120 s for the guest before they give up.
    const refusal = confirm.getByRole('alert');
    await refusal.waitFor({ timeout: slow(60_000) + 120_000 });
    assert.match(await refusal.innerText(), /'e2e-echo' did not shut down within 120 s: .* it is still running/);
    assert.equal(await row(page, 'e2e-echo').getAttribute('data-state'), 'Running');
    await shot(page, '04b-shut-down-timed-out');
    await confirm.getByRole('button', { name: 'Turn Off' }).click();
    await confirm.waitFor({ state: 'detached', timeout: slow(20_000) });
    await page.locator('.vm-row[data-state="Off"]').waitFor({ timeout: slow(20_000) });
    // Started again for the next test.
    await action(page, 'e2e-echo', 'start').click();
    await page.locator('.vm-row[data-state="Running"]').waitFor({ timeout: slow(30_000) });
  });

  it('turns it off after confirmation', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'turn-off').click();
    const confirm = page.getByRole('dialog', { name: 'Turn Off Machine' });
    await confirm.getByRole('button', { name: 'Turn Off' }).click();
    await page.locator('.vm-row[data-state="Off"]').waitFor({ timeout: slow(20_000) });
  });

  // Waits for the expected element; a refusal shown instead fails with its text at once.
  const expectOrRefusal = async (expected: Locator, refusal: Locator, what: string): Promise<void> => {
    const first = await Promise.race([
      expected.waitFor({ timeout: slow(60_000) }).then(() => 'expected' as const),
      refusal.waitFor({ timeout: slow(60_000) }).then(() => 'refused' as const),
    ]);
    if (first === 'refused') assert.fail(`${what} was refused: ${await refusal.innerText()}`);
  };

  it('takes a checkpoint and applies it', async () => {
    await row(page, 'e2e-echo').click();
    const checkpointBtn = action(page, 'e2e-echo', 'checkpoint');
    assert.equal(await checkpointBtn.isEnabled(), true, 'Checkpoint is offered for an Off VM');
    await checkpointBtn.click();
    const tree = page.getByRole('tree', { name: 'Checkpoints' });
    const item = tree.locator('[role="treeitem"]:not(.now)').first();
    const refused = page.locator('section[aria-label="Actions for e2e-echo"] [role="alert"]');
    await expectOrRefusal(item, refused, 'the checkpoint');
    // 'Now' hangs under the new checkpoint.
    const now = tree.locator('[role="treeitem"].now');
    await now.waitFor();
    assert.equal(await now.getAttribute('aria-level'), '2');
    await item.click();
    await page.locator('button[data-action="apply"]').click();
    const confirm = page.getByRole('dialog', { name: 'Apply Checkpoint' });
    await confirm.getByRole('button', { name: 'Apply' }).click();
    await confirm.waitFor({ state: 'detached', timeout: slow(30_000) });
    await shot(page, '05-checkpoint-applied');
  });

  it('exports it', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'export').click();
    const dialog = page.getByRole('dialog', { name: 'Export Virtual Machine' });
    await dialog.getByLabel('Location:').fill(exportDir);
    await dialog.getByRole('button', { name: 'Export' }).click();
    await expectOrRefusal(dialog.getByRole('status'), dialog.getByRole('alert'), 'the export');
    await shot(page, '06-export');
    const exported = readdirSync(exportDir);
    assert.equal(exported.length, 1, `the export folder holds one exported VM (${exported.join(', ')})`);
    assert.ok(existsSync(join(exportDir, exported[0] ?? '', 'export.json')), 'the export has its export.json');
    await dialog.getByRole('button', { name: 'Close', exact: true }).last().click();
  });

  it('exports the checkpoint as a new VM', async () => {
    await row(page, 'e2e-echo').click();
    const tree = page.getByRole('tree', { name: 'Checkpoints' });
    await tree.locator('[role="treeitem"]:not(.now)').first().click();
    // The checkpoint's own section comes after the VM's.
    await page.locator('section.action-section').last().locator('button[data-action="export"]').click();
    const dialog = page.getByRole('dialog', { name: 'Export Checkpoint' });
    await dialog.getByLabel('Location:').fill(exportDir);
    await dialog.getByRole('button', { name: 'Export' }).click();
    await expectOrRefusal(dialog.getByRole('status'), dialog.getByRole('alert'), 'the checkpoint export');
    const exported = readdirSync(exportDir);
    assert.equal(exported.length, 2, `the VM and its checkpoint were exported (${exported.join(', ')})`);
    for (const e of exported) assert.ok(existsSync(join(exportDir, e, 'export.json')), `${e} has its export.json`);
    await dialog.getByRole('button', { name: 'Close', exact: true }).last().click();
  });

  it('Revert returns the VM to its last checkpoint: a setting changed since is undone', async () => {
    const settings = page.getByRole('dialog', { name: /^Settings for e2e-echo/ });
    const memoryShown = async (): Promise<string> => {
      await action(page, 'e2e-echo', 'settings').click();
      const text = await settings.getByRole('button', { name: /^Memory/ }).innerText();
      await settings.getByRole('button', { name: 'Cancel' }).click();
      await settings.waitFor({ state: 'detached' });
      return text;
    };
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'settings').click();
    await settings.getByRole('button', { name: /^Memory/ }).click();
    await settings.getByLabel('Startup RAM (MB):').fill('96');
    await settings.getByRole('button', { name: 'OK' }).click();
    await settings.waitFor({ state: 'detached', timeout: slow(20_000) });
    assert.match(await memoryShown(), /96 MB/);
    await action(page, 'e2e-echo', 'revert').click();
    const confirm = page.getByRole('dialog', { name: 'Revert Virtual Machine' });
    await confirm.getByRole('button', { name: 'Revert' }).click();
    await confirm.waitFor({ state: 'detached', timeout: slow(30_000) });
    assert.match(await memoryShown(), /64 MB/);
  });

  it('renames a checkpoint, deletes one, and deletes a subtree', async () => {
    await row(page, 'e2e-echo').click();
    const tree = page.getByRole('tree', { name: 'Checkpoints' });
    const items = tree.locator('[role="treeitem"]:not(.now)');
    // The checkpoint's own section comes after the VM's.
    const cpAction = (id: string) =>
      page.locator('section.action-section').last().locator(`button[data-action="${id}"]`);
    const refused = page.locator('section[aria-label="Actions for e2e-echo"] [role="alert"]');
    await items.first().click();
    await cpAction('rename').click();
    const rename = page.getByRole('dialog', { name: 'Rename Checkpoint' });
    await rename.getByLabel('Name:').fill('before-upgrade');
    await rename.getByRole('button', { name: 'OK' }).click();
    await rename.waitFor({ state: 'detached', timeout: slow(20_000) });
    await tree.locator('[role="treeitem"]', { hasText: 'before-upgrade' }).waitFor();

    const takeCheckpoint = async (count: number): Promise<void> => {
      await row(page, 'e2e-echo').click();
      await action(page, 'e2e-echo', 'checkpoint').click();
      await expectOrRefusal(items.nth(count - 1), refused, 'the checkpoint');
    };
    const confirmDelete = async (title: string): Promise<void> => {
      const confirm = page.getByRole('dialog', { name: title });
      await confirm.getByRole('button', { name: 'Delete' }).click();
      await confirm.waitFor({ state: 'detached', timeout: slow(60_000) });
    };
    await takeCheckpoint(2);
    await items.nth(1).click();
    await cpAction('delete').click();
    await confirmDelete('Delete Checkpoint');
    // The tree follows the service's checkpoints event.
    await items.nth(1).waitFor({ state: 'detached', timeout: slow(20_000) });
    assert.equal(await items.count(), 1, 'one checkpoint is left');

    await takeCheckpoint(2);
    await tree.locator('[role="treeitem"]', { hasText: 'before-upgrade' }).click();
    await cpAction('delete-subtree').click();
    await confirmDelete('Delete Checkpoint Subtree');
    await items.first().waitFor({ state: 'detached', timeout: slow(20_000) });
    assert.equal(await items.count(), 0, 'no checkpoint is left');
    await shot(page, '07b-checkpoints-deleted');
  });

  it('shows a refused action where it was taken, and passes axe on the main window', async () => {
    await row(page, 'e2e-echo').click({ button: 'right' });
    const menu = page.getByRole('menu', { name: 'Virtual machine actions' });
    await menu.waitFor();
    assert.equal(await menu.locator('[data-action="turn-off"]').getAttribute('aria-disabled'), 'true');
    await shot(page, '07-context-menu');
    await page.keyboard.press('Escape');
    await menu.waitFor({ state: 'detached' });
    const violations = await axe(page, 'body');
    assert.deepEqual(violations, [], 'no serious or critical axe violations in the main window');
    await shot(page, '08-main');
  });

  it('Rename gives the VM a new name in the list', async () => {
    await row(page, 'e2e-echo').click();
    await action(page, 'e2e-echo', 'rename').click();
    const dialog = page.getByRole('dialog', { name: 'Rename Virtual Machine' });
    await dialog.getByLabel('Name:').fill('e2e-renamed');
    await dialog.getByRole('button', { name: 'OK' }).click();
    await dialog.waitFor({ state: 'detached', timeout: slow(20_000) });
    await row(page, 'e2e-renamed').waitFor();
    assert.equal(await row(page, 'e2e-echo').count(), 0);
  });

  it('Delete keeps the disk in the VM folder unless asked, then deletes the VM with it', async () => {
    await row(page, 'e2e-renamed').click();
    await action(page, 'e2e-renamed', 'settings').click();
    const settings = page.getByRole('dialog', { name: /^Settings for e2e-renamed/ });
    await settings.getByRole('button', { name: /^Hard Drive/ }).click();
    const disk = await settings.getByLabel('Virtual hard disk:').inputValue();
    await settings.getByRole('button', { name: 'Cancel' }).click();
    await action(page, 'e2e-renamed', 'delete').click();
    const confirm = page.getByRole('dialog', { name: 'Delete Selected Virtual Machines' });
    await confirm.getByRole('button', { name: 'Delete' }).click();
    // The wizard's new disk lives in the VM's folder: nothing is deleted without a yes.
    const refusal = confirm.getByRole('alert');
    await refusal.waitFor({ timeout: slow(20_000) });
    assert.match(
      await refusal.innerText(),
      /'e2e-renamed' has \d+ disk file\(s\) in .*Also delete the virtual hard disks/,
    );
    assert.equal(await row(page, 'e2e-renamed').count(), 1, 'the VM is still listed');
    await confirm.getByLabel(/Also delete the virtual hard disks/).check();
    await confirm.getByRole('button', { name: 'Delete' }).click();
    await expectOrRefusal(
      page.getByText('No virtual machines were found on this server.'),
      confirm.getByRole('alert').filter({ hasNotText: /Also delete the virtual hard disks/ }),
      'the deletion',
    );
    await confirm.waitFor({ state: 'detached', timeout: slow(20_000) });
    // The disk is where the services run (in the lab, its own /tmp): asked through them.
    const url = new URL(serve.url);
    const api = createHttpBerthApi({ token: url.searchParams.get('token') ?? '', baseUrl: url.origin });
    try {
      await api.ready();
      await assert.rejects(api.invoke('disk.inspect', { path: disk }), /no such file|not found|does not exist/i);
    } finally {
      api.close();
    }
    assert.deepEqual(
      consoleErrors.filter((e) => !/Failed to load resource/.test(e)),
      [],
    );
  });
});

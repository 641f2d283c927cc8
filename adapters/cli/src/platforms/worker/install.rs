//! `hookrun install worker`: the host's hooks directory and a cron line, and how to
//! give a container (Docker, Compose, Kubernetes) its hooks.

use std::path::Path;

use hookrun_core::config::Config;

use super::Worker;
use crate::host::sh;
use crate::install::Out;
use crate::platforms::Platform;

pub(super) fn install(
    p: &Worker,
    out: &mut Out<'_>,
    config: &Config,
    bin: &Path,
) -> anyhow::Result<()> {
    let host = out.host;
    let settings = host.settings(config, p.name());
    let dir = settings
        .hooks_dir
        .clone()
        .unwrap_or_else(|| host.path(hookrun_worker::DEFAULT_HOOKS_DIR));

    out.step("On a host (cron): the hooks directory (pre-<worker>, post-<worker> hooks go here, mode 0755, owned by root):");
    out.cmd(&format!("install -d -m 0755 {}", sh(&dir)));
    if out.apply {
        out.ensure_dir(&dir)?;
    }

    out.step("On a host: a cron line, e.g. in /etc/cron.d/hookrun-backup (cron's PATH is short: full paths):");
    out.cmd(&format!(
        "0 3 * * * root {} run --no-wait backup -- /usr/local/bin/backup.sh",
        bin.display()
    ));
    out.say(
        "(--no-wait: a run that finds the previous one still going exits 0 instead of piling up)",
    );

    out.step("In a container (Docker, Compose): put hookrun-worker in the image and mount the hooks at /hooks, read-only:");
    out.cmd("chown -R root:root hooks && chmod 0755 hooks hooks/*      # on the host: hookrun refuses hooks others can change");
    out.cmd("docker run -v ./hooks:/hooks:ro -e HOOK_TIMEOUT=300 IMAGE hookrun-worker run backup -- /usr/local/bin/backup.sh");
    out.say("Compose: volumes: [\"./hooks:/hooks:ro\"] and command: [\"hookrun-worker\", \"run\", \"backup\", \"--\", \"/usr/local/bin/backup.sh\"]");

    out.step("In Kubernetes: a ConfigMap with the hooks, mounted at /hooks with defaultMode 0755 (in JSON: 493):");
    out.cmd("volumes: [{name: hooks, configMap: {name: backup-hooks, defaultMode: 0755}}]");
    out.cmd("volumeMounts: [{name: hooks, mountPath: /hooks, readOnly: true}]");
    out.say("Kubernetes makes the volume directory world-writable, which hookrun refuses: add a key hookrun.toml");
    out.say("holding '[worker]' and 'strict_permissions = false' to the ConfigMap, and set HOOKRUN_CONFIG=/hooks/hookrun.toml");

    out.step("Check:");
    out.cmd(&format!(
        "hookrun list --platform worker --phase pre-backup --object backup --hooks-dir {}",
        sh(&dir)
    ));
    out.cmd(&format!(
        "hookrun doctor --platform worker{}",
        out.root_arg()
    ));
    Ok(())
}

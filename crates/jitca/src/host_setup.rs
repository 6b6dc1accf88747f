//! `jitca host-setup`: everything one host needs to trust jitca, from the config.
//!
//! The default output is a POSIX `sh` script to run as root on the host
//! (`jitca host-setup --config FILE --host web1 | ssh root@web1 sh`). It writes the CA public
//! key, one principals file per login the rules allow there, what the KRL refresh needs (the
//! CA's pinned host key, the host's own key, its settings), fetches a first KRL if there is
//! none, and only then the `sshd_config` drop-in, which it checks with `sshd -t` and `sshd -T`.
//! Running it again brings the host up to date; the KRL and the host's key are never replaced.
//! `--format text` lists the same content as plain text.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ssh_key::PublicKey;

use crate::cli::{HostSetupArgs, HostSetupFormat};
use crate::config::Config;

/// Where the refresh script is installed by `docs/operator.md`.
const REFRESH_SCRIPT: &str = "/usr/local/sbin/jitca-krl-refresh";

pub fn run(args: HostSetupArgs) -> Result<()> {
    let bundle = Bundle::build(&args)?;
    let out = match args.format {
        HostSetupFormat::Script => bundle.script(),
        HostSetupFormat::Text => bundle.text(),
    };
    print!("{out}");
    Ok(())
}

/// The files of one host, under `--ssh-dir`.
struct Paths {
    ssh_dir: String,
    sshd_config: String,
    dropin_dir: String,
    dropin: String,
    ca_pub: String,
    principals_dir: String,
    krl: String,
    known_hosts: String,
    identity: String,
    env_file: String,
}

impl Paths {
    fn new(ssh_dir: &Path) -> Result<Paths> {
        let dir = ssh_dir.to_str().unwrap_or_default().trim_end_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+');
        if !ssh_dir.is_absolute() || dir.is_empty() || !dir.chars().all(plain) {
            bail!(
                "--ssh-dir must be an absolute path of letters, digits and / . _ - + (sshd reads \
                 relative paths against each user's home), not {}",
                jitca_policy::names::show(&ssh_dir.to_string_lossy())
            );
        }
        let at = |name: &str| format!("{dir}/{name}");
        Ok(Paths {
            ssh_dir: dir.to_string(),
            sshd_config: at("sshd_config"),
            dropin_dir: at("sshd_config.d"),
            dropin: at("sshd_config.d/jitca.conf"),
            ca_pub: at("jitca_ca.pub"),
            principals_dir: at("jitca_principals"),
            krl: at("jitca.krl"),
            known_hosts: at("jitca_known_hosts"),
            identity: at("jitca_refresh_ed25519"),
            env_file: at("jitca_refresh.env"),
        })
    }

    /// The three lines of the drop-in that matter.
    fn sshd_lines(&self) -> [(&'static str, String); 3] {
        [
            ("TrustedUserCAKeys", self.ca_pub.clone()),
            (
                "AuthorizedPrincipalsFile",
                format!("{}/%u", self.principals_dir),
            ),
            ("RevokedKeys", self.krl.clone()),
        ]
    }
}

/// Everything the host needs, read from the config.
struct Bundle {
    host: String,
    config_file: PathBuf,
    groups: Vec<String>,
    paths: Paths,
    /// The CA public key lines for `TrustedUserCAKeys`: the config's CA first, then `--extra-ca`.
    ca_lines: Vec<String>,
    /// (login, principal) for every login a rule allows on the host.
    principals: Vec<(String, String)>,
    ca_host: String,
    ca_port: u16,
    /// Where `ca_host` came from, for the comments.
    ca_host_origin: String,
    /// The control channel's host key as a `known_hosts` line.
    known_hosts_line: String,
}

impl Bundle {
    fn build(args: &HostSetupArgs) -> Result<Bundle> {
        let config = load(&args.config)?;
        let host = args.host.clone();
        let groups: Vec<String> = config
            .policy
            .host_groups()
            .filter(|(_, hosts)| hosts.contains(&host))
            .map(|(group, _)| group.to_string())
            .collect();
        if groups.is_empty() {
            bail!(
                "host {} is not in any host group of {}; add it under hosts: first",
                shown(&host),
                args.config.display()
            );
        }
        let paths = Paths::new(&args.ssh_dir)?;

        // The public half only: it needs neither the key's passphrase nor its agent.
        let mut ca_public = config
            .ca
            .source
            .public_key()
            .context("cannot read the CA public key")?;
        ca_public.set_comment("jitca-ca");
        let mut ca_lines = vec![ca_public.to_openssh()?];
        let mut trusted = vec![ca_public.key_data().clone()];
        // Earlier CA keys from the config (a rotation in progress), then any given here.
        for key in config
            .ca
            .previous_public_keys()
            .map_err(|e| anyhow!("previous_ca_keys: {e}"))?
        {
            if !trusted.contains(key.key_data()) {
                trusted.push(key.key_data().clone());
                ca_lines.push(key.to_openssh()?);
            }
        }
        for file in &args.extra_ca {
            for key in read_public_keys(file)? {
                if !trusted.contains(key.key_data()) {
                    trusted.push(key.key_data().clone());
                    ca_lines.push(key.to_openssh()?);
                }
            }
        }

        let principals = config
            .policy
            .logins_for_host(&host)
            .into_iter()
            .map(|login| {
                let principal = config.policy.principal(&login, &host);
                (login, principal)
            })
            .collect();

        let (ca_host, ca_port, ca_host_origin) = ca_address(&config, args.ca.as_deref())?;
        let mut host_pub = jitca_signer::load_private_key(&config.host_key)?
            .public_key()
            .clone();
        host_pub.set_comment("jitca-control");
        let pattern = if ca_port == 22 {
            ca_host.clone()
        } else {
            format!("[{ca_host}]:{ca_port}")
        };
        let known_hosts_line = format!("{pattern} {}", host_pub.to_openssh()?);

        Ok(Bundle {
            host,
            config_file: args.config.clone(),
            groups,
            paths,
            ca_lines,
            principals,
            ca_host,
            ca_port,
            ca_host_origin,
            known_hosts_line,
        })
    }

    fn env_lines(&self) -> String {
        let p = &self.paths;
        format!(
            "JITCA_CA={}\nJITCA_PORT={}\nJITCA_IDENTITY={}\nJITCA_KNOWN_HOSTS={}\nJITCA_KRL={}\n",
            self.ca_host, self.ca_port, p.identity, p.known_hosts, p.krl
        )
    }

    /// The refresh command as one line, naming only the settings that differ from the script's
    /// defaults.
    fn refresh_command(&self) -> String {
        let p = &self.paths;
        let mut line = format!("JITCA_CA={}", self.ca_host);
        if self.ca_port != 2222 {
            let _ = write!(line, " JITCA_PORT={}", self.ca_port);
        }
        for (name, value, default) in [
            (
                "JITCA_IDENTITY",
                &p.identity,
                "/etc/ssh/jitca_refresh_ed25519",
            ),
            (
                "JITCA_KNOWN_HOSTS",
                &p.known_hosts,
                "/etc/ssh/jitca_known_hosts",
            ),
            ("JITCA_KRL", &p.krl, "/etc/ssh/jitca.krl"),
        ] {
            if value != default {
                let _ = write!(line, " {name}={value}");
            }
        }
        let _ = write!(line, " {REFRESH_SCRIPT}");
        line
    }

    fn dropin_text(&self) -> String {
        let mut out = format!(
            "# jitca: written by `jitca host-setup --host {}`; run it again to update, do not edit.\n\
             # sshd accepts user certificates signed by jitca's CA key, for the principals listed in\n\
             # {}/LOGIN, unless jitca's KRL revokes them.\n",
            self.host, self.paths.principals_dir
        );
        for (keyword, value) in self.paths.sshd_lines() {
            let _ = writeln!(out, "{keyword} {value}");
        }
        out
    }

    /// The plain listing: each file's path and content.
    fn text(&self) -> String {
        let p = &self.paths;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# host {} (host groups: {}), from {}",
            self.host,
            self.groups.join(", "),
            self.config_file.display()
        );
        let _ = writeln!(out, "\n## {} (the sshd_config lines)", p.dropin);
        out.push_str(&self.dropin_text());
        let _ = writeln!(out, "\n## {} (the CA public key, mode 0644)", p.ca_pub);
        for line in &self.ca_lines {
            let _ = writeln!(out, "{line}");
        }
        if self.principals.is_empty() {
            let _ = writeln!(
                out,
                "\n## {}/ (no rule allows a login on {}: no principals files)",
                p.principals_dir, self.host
            );
        }
        for (login, principal) in &self.principals {
            let _ = writeln!(
                out,
                "\n## {}/{login} (mode 0644)\n{principal}",
                p.principals_dir
            );
        }
        let _ = writeln!(
            out,
            "\n## {} (the CA's control channel host key, pinned)\n{}",
            p.known_hosts, self.known_hosts_line
        );
        let _ = writeln!(
            out,
            "\n## {} (settings of the KRL refresh; {})\n{}",
            p.env_file,
            self.ca_host_origin,
            self.env_lines().trim_end()
        );
        let _ = writeln!(
            out,
            "\n## KRL refresh, every minute (deploy/jitca-krl-refresh.timer), with this host's key\n\
             ## {} registered in the jitca config under users: with no groups\n{}",
            p.identity,
            self.refresh_command()
        );
        let _ = writeln!(
            out,
            "\n## {} must exist before sshd reads RevokedKeys (sshd refuses every public key when \
             it is missing): run the refresh once first",
            p.krl
        );
        out
    }

    /// The set-up script.
    fn script(&self) -> String {
        let p = &self.paths;
        let host = &self.host;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"#!/bin/sh
# jitca set-up for host {host} (host groups: {groups}), from {config}.
# Run it as root on {host}, for instance:
#     jitca host-setup --config {config} --host {host} | ssh root@{host} sh
# It is safe to run again, and that is how to bring the host up to date after a change of
# rules: it rewrites jitca's files, and never replaces the KRL nor the host's own key.
#
#   1. {ca_pub}             the CA public key sshd trusts for user certificates
#   2. {principals_dir}/LOGIN   the principal a certificate needs for LOGIN here
#   3. {known_hosts}, {identity}, {env_file}
#      what the KRL refresh needs: the CA's pinned host key, this host's key, the settings
#   4. {krl}                 a first KRL, fetched if there is none
#   5. {dropin}   the sshd_config lines, last, checked with sshd -t
# sshd picks the change up on its next reload (systemctl reload ssh).
set -eu
umask 022

# put MODE FILE: stdin becomes FILE, atomically (a temporary file beside it, then renamed).
put() {{
    put_tmp=$(mktemp "$2.XXXXXX")
    cat > "$put_tmp"
    chmod "$1" "$put_tmp"
    mv -f "$put_tmp" "$2"
}}

mkdir -p {q_ssh_dir}

# 1. The CA public key (TrustedUserCAKeys). During a CA key rotation it holds two keys: see
#    --extra-ca and docs/operator.md.
put 0644 {q_ca_pub} <<'JITCA_EOF'
{ca_lines}
JITCA_EOF
"#,
            groups = self.groups.join(", "),
            config = self.config_file.display(),
            ca_pub = p.ca_pub,
            principals_dir = p.principals_dir,
            known_hosts = p.known_hosts,
            identity = p.identity,
            env_file = p.env_file,
            krl = p.krl,
            dropin = p.dropin,
            q_ssh_dir = quote(&p.ssh_dir),
            q_ca_pub = quote(&p.ca_pub),
            ca_lines = self.ca_lines.join("\n"),
        );

        // 2. The principals files.
        let _ = write!(
            s,
            "\n# 2. The principals files (AuthorizedPrincipalsFile {}/%u).\n\
             #    A certificate logs in as LOGIN only if it names the principal in LOGIN's file; jitca's\n\
             #    principal_format puts the host's name in it, so one for another host is refused here.\n\
             #    The folder is jitca's: files of logins no rule allows here any more are removed.\n\
             mkdir -p {q}\nchmod 0755 {q}\n",
            p.principals_dir,
            q = quote(&p.principals_dir)
        );
        if self.principals.is_empty() {
            let _ = writeln!(
                s,
                "# No rule allows a login on {host}: no certificate is accepted here."
            );
        }
        for (login, principal) in &self.principals {
            let _ = write!(
                s,
                "put 0644 {} <<'JITCA_EOF'\n{principal}\nJITCA_EOF\n",
                quote(&format!("{}/{login}", p.principals_dir))
            );
        }
        let keep: Vec<&str> = self.principals.iter().map(|(l, _)| l.as_str()).collect();
        let keep_pattern = if keep.is_empty() {
            // Matches no file name.
            "/".to_string()
        } else {
            keep.join("|")
        };
        let _ = write!(
            s,
            "for f in {q}/* {q}/.[!.]*; do\n\
             \x20   [ -e \"$f\" ] || continue\n\
             \x20   case \"${{f##*/}}\" in\n\
             \x20       {keep_pattern}) ;;\n\
             \x20       *) rm -f \"$f\"; echo \"jitca: removed $f: no rule allows that login on {host} now\" >&2 ;;\n\
             \x20   esac\n\
             done\n",
            q = quote(&p.principals_dir),
        );

        // 3. What the KRL refresh needs.
        let _ = write!(
            s,
            r#"
# 3. The KRL refresh (deploy/jitca-krl-refresh, run every minute by jitca-krl-refresh.timer)
#    fetches the KRL over jitca's control channel as this host: with its own key, registered
#    in the jitca config under users: with no groups, and against the CA's host key pinned here.
#    The CA, as {host} reaches it: {ca_host}:{ca_port} ({origin}).
put 0644 {q_known_hosts} <<'JITCA_EOF'
{known_hosts_line}
JITCA_EOF
if [ ! -f {q_identity} ]; then
    ssh-keygen -q -t ed25519 -N '' -C {q_comment} -f {q_identity}
fi
put 0644 {q_env} <<'JITCA_EOF'
# jitca-krl-refresh settings for {host}, written by jitca host-setup (EnvironmentFile= of
# jitca-krl-refresh.service; also readable by sh).
{env}JITCA_EOF
# By hand: {refresh}

# 4. A first KRL. sshd refuses every public key, certificate or not, while RevokedKeys names a
#    missing file: so the list is fetched before the sshd_config lines are written, and an
#    installed one is left alone (the refresh replaces it only with a newer version).
if [ -f {q_krl} ]; then
    echo "jitca: keeping the installed KRL {krl}" >&2
else
    krl_tmp=$(mktemp {q_krl}.XXXXXX)
    if ssh -F /dev/null -p {ca_port} -i {q_identity} \
        -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes -o ConnectTimeout=10 \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile={q_known_hosts} \
        jitca@{ca_host} krl > "$krl_tmp" &&
        ssh-keygen -Q -l -f "$krl_tmp" 2>/dev/null | grep -q '^# KRL version '
    then
        chmod 0644 "$krl_tmp"
        mv -f "$krl_tmp" {q_krl}
        echo "jitca: installed a first KRL from {ca_host}:{ca_port} in {krl}" >&2
    else
        rm -f "$krl_tmp"
        echo "jitca: could not fetch the KRL from {ca_host}:{ca_port} as {host}; sshd is left as it was." >&2
        echo "Register this host's key in the jitca config, reload jitca (systemctl reload jitca)," >&2
        echo "then run this again:" >&2
        echo "users:" >&2
        echo "  {host}:" >&2
        echo "    keys: [\"$(cut -d' ' -f1,2 {q_identity_pub}) jitca-krl@{host}\"]" >&2
        echo "    groups: []" >&2
        exit 1
    fi
fi
"#,
            ca_host = self.ca_host,
            ca_port = self.ca_port,
            origin = self.ca_host_origin,
            krl = p.krl,
            q_known_hosts = quote(&p.known_hosts),
            known_hosts_line = self.known_hosts_line,
            q_identity = quote(&p.identity),
            q_identity_pub = quote(&format!("{}.pub", p.identity)),
            q_comment = quote(&format!("jitca-krl@{host}")),
            q_env = quote(&p.env_file),
            env = self.env_lines(),
            refresh = self.refresh_command(),
            q_krl = quote(&p.krl),
        );

        // 5. The drop-in, checked.
        let checks: String = p
            .sshd_lines()
            .iter()
            .map(|(keyword, value)| {
                format!(
                    "    want {} {}\n",
                    quote(&keyword.to_ascii_lowercase()),
                    quote(value)
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"
# 5. The sshd_config lines, in a drop-in that sshd_config's `Include {dropin_dir}/*.conf`
#    reads (Debian, Ubuntu, Fedora and RHEL have it at the top). sshd keeps the first value it
#    reads for each keyword: the check below makes sure these are the ones in force.
mkdir -p {q_dropin_dir}
if [ -f {q_dropin} ]; then mv -f {q_dropin} {q_dropin}.previous; fi
put 0644 {q_dropin} <<'JITCA_EOF'
{dropin}JITCA_EOF

# Back out of the drop-in (restoring the one before, if any) and stop.
undo() {{
    if [ -f {q_dropin}.previous ]; then
        mv -f {q_dropin}.previous {q_dropin}
    else
        rm -f {q_dropin}
    fi
    exit 1
}}
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
if [ -f {q_sshd_config} ] && [ -x "$sshd_bin" ]; then
    if ! "$sshd_bin" -t -f {q_sshd_config}; then
        echo "jitca: sshd -t refuses {sshd_config} with {dropin_path}; put back the config as it was" >&2
        undo
    fi
    effective=$("$sshd_bin" -T -f {q_sshd_config})
    want() {{
        if ! printf '%s\n' "$effective" | grep -qxF "$1 $2"; then
            echo "jitca: sshd does not use '$1 $2' from {dropin_path}: it reads" >&2
            echo "  '$(printf '%s\n' "$effective" | grep "^$1 " || echo "no $1")';" >&2
            echo "  put 'Include {dropin_dir}/*.conf' at the top of {sshd_config}, before any $1 line" >&2
            undo
        fi
    }}
{checks}else
    echo "jitca: no {sshd_config} (or no sshd) here: include {dropin_path} in sshd's config and check it with sshd -t" >&2
fi
rm -f {q_dropin}.previous
echo "jitca: {host} is set up; reload sshd (systemctl reload ssh) and enable the KRL refresh timer" >&2
echo "(systemctl enable --now jitca-krl-refresh.timer, units in deploy/)." >&2
"#,
            dropin = self.dropin_text(),
            dropin_path = p.dropin,
            dropin_dir = p.dropin_dir,
            q_dropin_dir = quote(&p.dropin_dir),
            q_dropin = quote(&p.dropin),
            sshd_config = p.sshd_config,
            q_sshd_config = quote(&p.sshd_config),
        );
        s
    }
}

/// The config, with the checks of `jitca check`, or one line saying why not.
fn load(path: &Path) -> Result<Config> {
    let config = crate::config::load(path).and_then(|config| {
        config.check_key_files()?;
        Ok(config)
    });
    config.map_err(|errors| {
        let all: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        anyhow!("{} fails jitca check: {}", path.display(), all.join("; "))
    })
}

/// The CA's public keys in `file`: `ca.pub` of another CA key, one key a line.
fn read_public_keys(file: &Path) -> Result<Vec<PublicKey>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--extra-ca: cannot read {}", file.display()))?;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut key = PublicKey::from_openssh(line).map_err(|e| {
            anyhow!(
                "--extra-ca: {} holds a line that is not an OpenSSH public key ({e})",
                file.display()
            )
        })?;
        key.set_comment("jitca-ca-extra");
        keys.push(key);
    }
    if keys.is_empty() {
        bail!("--extra-ca: {} holds no public key", file.display());
    }
    Ok(keys)
}

/// The CA's address as hosts reach it: `--ca`, else the config's `listen` (this machine's host
/// name when that is every address). Returns (host, port, where the host came from).
fn ca_address(config: &Config, ca: Option<&str>) -> Result<(String, u16, String)> {
    let port = config.listen.port();
    let (host, port, origin) = match ca {
        Some(text) => {
            let (host, port) = split_host_port(text).unwrap_or((text, port));
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (host.to_string(), port, "--ca".to_string())
        }
        None => {
            let ip = config.listen.ip();
            if ip.is_unspecified() {
                let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                if name.is_empty() {
                    bail!(
                        "the config listens on {}; say how hosts reach the CA with --ca HOST[:PORT]",
                        config.listen
                    );
                }
                (
                    name,
                    port,
                    format!(
                        "this machine's host name, as the config listens on {}; --ca to change it",
                        config.listen
                    ),
                )
            } else {
                (
                    ip.to_string(),
                    port,
                    "the config's listen address; --ca to change it".to_string(),
                )
            }
        }
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || host.starts_with('-') || !host.chars().all(plain) {
        bail!(
            "--ca: {} is not a host name or address",
            jitca_policy::names::show(&host)
        );
    }
    if port == 0 {
        bail!(
            "the config listens on port 0 (any free port); say where the CA listens with --ca HOST:PORT"
        );
    }
    Ok((host, port, origin))
}

/// `host:port`, `[v6]:port`; None when there is no port (a bare host or IPv6 address).
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if host.starts_with('[') && host.ends_with(']') {
        return Some((host, port));
    }
    if host.contains(':') || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        // A bare IPv6 address: its last group is not a port.
        return None;
    }
    Some((host, port))
}

/// A name as typed: as is when plain, else quoted and escaped.
fn shown(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        name.to_string()
    } else {
        jitca_policy::names::show(name)
    }
}

/// Single-quotes `s` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("ca:2222"), Some(("ca", 2222)));
        assert_eq!(split_host_port("[::1]:2222"), Some(("[::1]", 2222)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("ca"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}

//! `request`: ask for access, then wait for the decision (or `--no-wait`).

use std::time::Duration;

use jitca_authority::{NewRequest, Request, State};
use jitca_policy::{
    check_reason, format_duration, parse_host_list, parse_login_list, parse_request_duration,
};
use russh::keys::PublicKey;
use tokio::sync::broadcast::error::RecvError;

use super::ctx::{Ctx, Failure, Outcome, grammar};
use crate::args::{Kind, Spec};
use crate::io::StdinRead;

/// Largest public key accepted on stdin (an RSA 16384-bit key is about 2.8 KiB).
const MAX_KEY_BYTES: usize = 16 * 1024;

const SPEC: Spec = Spec {
    usage: "request HOSTS --as LOGIN --for DURATION --reason TEXT [--no-wait] [--break-glass] < KEY.pub",
    positionals: &["HOSTS"],
    options: &[
        ("--as", Kind::Value),
        ("--for", Kind::Value),
        ("--reason", Kind::Words),
        ("--no-wait", Kind::Flag),
        ("--break-glass", Kind::Flag),
    ],
    required: &["--as", "--for", "--reason"],
};

fn refused(e: impl ToString) -> Failure {
    Failure::Refused(e.to_string())
}

/// What `request` takes from its command line, checked.
#[derive(Debug)]
pub(super) struct Args {
    /// Checked host names, repeats dropped.
    pub(super) hosts: Vec<String>,
    /// Checked logins, repeats dropped.
    pub(super) logins: Vec<String>,
    /// More than zero.
    pub(super) duration: Duration,
    /// Checked and trimmed.
    pub(super) reason: String,
    no_wait: bool,
    break_glass: bool,
}

/// The grammar and every typed value, checked before stdin is read or anything is stored.
pub(super) fn parse(args: &[String]) -> Result<Args, Failure> {
    let parsed = grammar(&SPEC, args)?;
    let hosts = parse_host_list(&parsed.positionals[0]).map_err(refused)?;
    let logins = parse_login_list(parsed.value("--as").unwrap_or_default()).map_err(refused)?;
    let duration =
        parse_request_duration(parsed.value("--for").unwrap_or_default()).map_err(refused)?;
    let reason = check_reason(parsed.value("--reason").unwrap_or_default()).map_err(refused)?;
    Ok(Args {
        hosts,
        logins,
        duration,
        reason,
        no_wait: parsed.flag("--no-wait"),
        break_glass: parsed.flag("--break-glass"),
    })
}

pub(super) async fn run(ctx: &mut Ctx, args: Args) -> Outcome {
    let Args {
        hosts,
        logins,
        duration,
        reason,
        no_wait,
        break_glass,
    } = args;
    let public_key = read_public_key(ctx).await?;

    // Subscribe before the request exists, so no decision can slip past the wait below.
    let mut changes = ctx.authority.subscribe();
    let new = NewRequest {
        hosts,
        logins,
        duration,
        reason,
        public_key,
        break_glass,
    };
    let made = ctx.call(move |a, c| a.make(c, new)).await?;
    let (request, mut certificate_now) = (made.request, made.certificate);
    let id = request.id.clone();
    if no_wait {
        ctx.out
            .stderr(&format!("request {id} made; {}", no_wait_line(&request)))
            .await;
        ctx.out.stdout(format!("{id}\n")).await;
        return Ok(());
    }
    ctx.out
        .stderr(&format!("request {id} made; {}", status_line(&request)))
        .await;

    let mut seen_approvals = request.approvals.len();
    // The first look is at what `make` returned. With no approval needed it is issued and
    // recorded already (its `Certificate` exists only once durable): the certificate goes out
    // at once, without reading the request back and flushing again on two more blocking
    // threads.
    let mut submitted = Some(request);
    loop {
        let now_request = match submitted.take() {
            Some(request) => request,
            None => {
                ctx.call({
                    let id = id.clone();
                    move |a, _| a.current(&id)
                })
                .await?
            }
        };
        match &now_request.state {
            State::Issued(issuance) => {
                let certificate = match certificate_now.take() {
                    Some(certificate) => certificate,
                    None => {
                        ctx.call({
                            let id = id.clone();
                            move |a, c| a.issued_certificate(c, &id)
                        })
                        .await?
                    }
                };
                let approvers: Vec<&str> = now_request.approvers().collect();
                ctx.out
                    .stderr(&format!(
                        "request {id} approved{}: certificate serial {} valid until {}",
                        if approvers.is_empty() {
                            String::new()
                        } else {
                            format!(" by {}", approvers.join(", "))
                        },
                        issuance.serial,
                        issuance.valid_before.to_rfc3339()
                    ))
                    .await;
                ctx.out.stdout(format!("{certificate}\n")).await;
                return Ok(());
            }
            State::Denied { by, reason, .. } => {
                return Err(Failure::Refused(format!(
                    "request {id} was denied by {by}: {}",
                    crate::render::clean(reason)
                )));
            }
            State::Revoked { revocation, .. } => {
                return Err(Failure::Refused(format!(
                    "request {id} was revoked by {}: {}",
                    revocation.by,
                    crate::render::clean(&revocation.reason)
                )));
            }
            State::Lapsed { .. } => {
                return Err(Failure::Refused(format!(
                    "request {id} lapsed: nobody decided within {}",
                    format_duration(Duration::from_secs(
                        (now_request.lapses_at - now_request.created_at)
                            .num_seconds()
                            .max(0) as u64
                    ))
                )));
            }
            State::Pending => {
                for approval in
                    &now_request.approvals[seen_approvals.min(now_request.approvals.len())..]
                {
                    ctx.out
                        .stderr(&format!(
                            "approved by {} ({}/{})",
                            approval.by,
                            now_request.approvals.len(),
                            now_request.approvals_needed
                        ))
                        .await;
                }
                seen_approvals = now_request.approvals.len();
            }
        }
        let deadline = tokio::time::Instant::now()
            + (now_request.lapses_at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
        tokio::select! {
            changed = changes.recv() => match changed {
                Ok(changed) if changed != id => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Err(Failure::Refused("the daemon is shutting down".into())),
            },
            _ = tokio::time::sleep_until(deadline) => {
                let id = id.clone();
                ctx.call(move |a, _| a.lapse_if_due(&id)).await?;
            }
        }
    }
}

/// `--no-wait` returns at once: say what the request needs and how to fetch the result,
/// never that this command is waiting.
fn no_wait_line(request: &Request) -> String {
    match &request.state {
        State::Issued(_) => format!(
            "no approval needed: fetch the certificate with `get {}`",
            request.id
        ),
        _ => format!(
            "it needs {}; fetch the certificate with `get {}` once approved",
            approvals_due(request),
            request.id
        ),
    }
}

fn status_line(request: &Request) -> String {
    match &request.state {
        State::Issued(_) => "no approval needed".into(),
        _ => format!("waiting for {}", approvals_due(request)),
    }
}

/// `N approval(s) (lapses at T)`.
fn approvals_due(request: &Request) -> String {
    format!(
        "{} approval{} (lapses at {})",
        request.approvals_needed,
        if request.approvals_needed == 1 {
            ""
        } else {
            "s"
        },
        request
            .lapses_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The public key to certify, from stdin: exactly one OpenSSH public key line.
async fn read_public_key(ctx: &mut Ctx) -> Result<PublicKey, Failure> {
    let Some(mut stdin) = ctx.stdin.take() else {
        return Err(refused("stdin was already read"));
    };
    let bytes = match stdin.read_to_end(MAX_KEY_BYTES).await {
        StdinRead::Complete(bytes) => bytes,
        StdinRead::TooLong => {
            return Err(refused(format!(
                "stdin is longer than {} KiB; send one public key",
                MAX_KEY_BYTES / 1024
            )));
        }
    };
    parse_public_key(&bytes).map_err(Failure::Refused)
}

fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "stdin is not a public key (not text)".to_string())?;
    if text.contains("PRIVATE KEY") {
        // Never echo any of it.
        return Err(
            "that is a private key: send the public key (the .pub file), never the private key"
                .into(),
        );
    }
    if text.contains("---- BEGIN SSH2 PUBLIC KEY ----") {
        return from_rfc4716(text);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [] => {
            return Err("no public key on stdin: send one, e.g. `< ~/.ssh/id_ed25519.pub`".into());
        }
        [line] => *line,
        _ => return Err("stdin holds more than one line: send exactly one public key".into()),
    };
    let algorithm = line.split_whitespace().next().unwrap_or_default();
    if algorithm.ends_with("-cert-v01@openssh.com") {
        return Err("that is a certificate: send the public key it certifies".into());
    }
    PublicKey::from_openssh(line).map_err(|_| "stdin is not an OpenSSH public key".to_string())
}

/// An RFC 4716 public key ("SSH2" format: PuTTYgen's default, `ssh-keygen -e`): the base64
/// body between the BEGIN and END lines, after the headers, is the same key blob as an
/// OpenSSH line carries, so it is read as one.
fn from_rfc4716(text: &str) -> Result<PublicKey, String> {
    let refused = |why: &str| format!("stdin holds an RFC 4716 (SSH2) public key that {why}");
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("---- BEGIN SSH2 PUBLIC KEY ----"));
    lines.next();
    let mut body = String::new();
    let mut continued = false;
    let mut ended = false;
    for line in lines {
        if line.starts_with("---- END SSH2 PUBLIC KEY ----") {
            ended = true;
            break;
        }
        // A header ("Comment: ...") may continue over lines ending in a backslash.
        if continued || line.contains(':') {
            continued = line.ends_with('\\');
            continue;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(refused("has no END line"));
    }
    if body.is_empty() {
        return Err(refused("has no key in it"));
    }
    // The algorithm is the blob's first field: a 4-byte length, then the name.
    let blob = data_encoding::BASE64
        .decode(body.as_bytes())
        .map_err(|_| refused("is not valid base64"))?;
    let algorithm = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .and_then(|name| std::str::from_utf8(name).ok())
        .ok_or_else(|| refused("does not hold a key"))?;
    PublicKey::from_openssh(&format!("{algorithm} {body}")).map_err(|_| {
        refused("jitca cannot read: send the OpenSSH form (`ssh-keygen -i -f KEY.pub`)")
    })
}

#[cfg(test)]
mod tests {
    use super::parse_public_key;

    #[test]
    fn public_key_refusals_are_specific() {
        let err = |s: &str| parse_public_key(s.as_bytes()).unwrap_err();
        assert!(err("").starts_with("no public key"));
        assert!(err("\n \n").starts_with("no public key"));
        assert!(
            err("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
                .contains("private key")
        );
        assert!(err("ssh-ed25519-cert-v01@openssh.com AAAA x").contains("certificate"));
        assert!(err("hello").contains("not an OpenSSH public key"));
        assert!(err("a\nb").contains("more than one line"));
        let ok =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me\n";
        assert!(parse_public_key(ok.as_bytes()).is_ok());
    }

    /// PuTTYgen's default export, RFC 4716: read as the same key, header and all.
    #[test]
    fn an_rfc4716_public_key_is_read_as_openssh() {
        let openssh =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let body = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let putty = format!(
            "---- BEGIN SSH2 PUBLIC KEY ----\r\nComment: \"eddsa-key-20261202 with a long \\\r\ncomment\"\r\n{}\r\n{}\r\n---- END SSH2 PUBLIC KEY ----\r\n",
            &body[..40],
            &body[40..]
        );
        let key = parse_public_key(putty.as_bytes()).unwrap();
        assert_eq!(key.to_openssh().unwrap(), openssh);

        let err = |s: &str| parse_public_key(s.as_bytes()).unwrap_err();
        let no_end = format!("---- BEGIN SSH2 PUBLIC KEY ----\n{body}\n");
        assert!(err(&no_end).contains("RFC 4716"), "{}", err(&no_end));
        let garbage = "---- BEGIN SSH2 PUBLIC KEY ----\n!!!!\n---- END SSH2 PUBLIC KEY ----\n";
        assert!(err(garbage).contains("RFC 4716"), "{}", err(garbage));
    }
}

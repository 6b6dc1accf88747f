use super::ctx::{Ctx, Outcome};

pub(super) const HELP: &str = "\
jitca: temporary, approved SSH access. Run commands as `HINT COMMAND [ARGS]`.

  whoami                               who you are, what you may request and approve
  request HOSTS --as LOGIN --for DURATION --reason TEXT [--no-wait] [--break-glass]
                                       ask for access; the public key to certify on stdin;
                                       waits for approval and prints the certificate
                                       (HOSTS and LOGIN may be comma-separated lists;
                                       DURATION like 90s, 15m, 2h, 1d). --break-glass:
                                       emergency access under a break_glass rule, issued
                                       at once, alerted, and reviewed afterwards
  show ID [--json]                     everything about one request
  list [--pending] [--mine] [--unreviewed] [--unused] [--json]
                                       requests you may see, newest first; --unreviewed:
                                       ended grants without a review (break-glass first);
                                       --unused: grants never seen used in sshd logs
  approve ID                           approve a request (never your own)
  watch [--json]                       requests you may approve, as they come and go,
                                       until you close the connection
  deny ID --reason TEXT                deny a pending request
  get ID                               your issued certificate again, while it is valid
  done ID                              end your access early: the certificate is revoked
  revoke ID --reason TEXT              revoke a certificate (approvers of its rule, auditors)
  review ID --outcome ok|concern --note TEXT
                                       review an ended grant (approvers of its rule,
                                       auditors; never the requester)
  usage --sshd-log - < auth.log        record which grants sshd logged in (auditors)
  krl > FILE                           the current OpenSSH KRL (for RevokedKeys), binary
  status SERIAL...                     per certificate serial: live|revoked|expired|unknown
                                       and its valid-before in Unix seconds (for hosts)
  ca-key                               the CA public key (for TrustedUserCAKeys)
  audit [--since T] [--until T] [--user U] [--host H] [--serial N] [--request ID] [--json]
                                       the audit log (auditors); T like 2026-11-29, an
                                       RFC 3339 time, or a duration ago (2h)
  audit verify                         check the audit log's hash chain end to end
  audit verify --checkpoint - < FILE   ... and that it still holds a signed checkpoint
  audit key                            the public key that signs audit checkpoints
  audit checkpoint                     a checkpoint: record count, head, time, signed
  report [--since T] [--until T] [--format text|json|html]
                                       the period's evidence: grants, approvals, denials,
                                       revocations, reviews, usage, rules (auditors)
  mfa enroll                           a second factor (TOTP app): prints an otpauth://
                                       URI to scan; rules with requester_mfa/approver_mfa
                                       then take the one-time code ssh asks for
  mfa confirm CODE                     put it in force with the code the app shows
  mfa status                           your second factor: none, unconfirmed, active
  mfa reset USER                       remove someone's second factor (operators)
  help                                 this text

Exit status: 0 success, 1 refused (the reason on stderr), 2 usage error.
Example:
  HINT request web1 --as deploy --for 1h --reason INC-42 disk full \\
      < ~/.ssh/id_ed25519.pub > ~/.ssh/id_ed25519-cert.pub
";

/// The whole text, whatever follows `help`.
pub(super) async fn run(ctx: &mut Ctx) -> Outcome {
    ctx.out.stdout(HELP.replace("HINT", &ctx.hint)).await;
    Ok(())
}

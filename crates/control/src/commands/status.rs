//! `status SERIAL...`: for hosts, where each certificate of their open sessions stands.

use super::ctx::{Ctx, Failure, Outcome};
use crate::args::{Spec, shown};

const SPEC: Spec = Spec {
    usage: "status SERIAL...",
    positionals: &["SERIAL"],
    options: &[],
    required: &[],
};

/// Most serials one call may ask about.
const MAX_SERIALS: usize = 1000;

/// The serials asked about, each a certificate serial (a decimal number), at least one and at
/// most [`MAX_SERIALS`]. Anything else is a usage error.
pub(super) fn parse(args: &[String]) -> Result<Vec<u64>, Failure> {
    let usage = |problem: String| Failure::Usage(format!("{problem}; usage: {}", SPEC.usage));
    if args.is_empty() {
        return Err(usage("missing SERIAL".into()));
    }
    if args.len() > MAX_SERIALS {
        return Err(usage(format!(
            "{} serials given, at most {MAX_SERIALS} per call",
            args.len()
        )));
    }
    args.iter()
        .map(|word| {
            if word.is_empty() || word.len() > 20 || !word.bytes().all(|b| b.is_ascii_digit()) {
                return Err(usage(format!(
                    "{} is not a certificate serial",
                    shown(word)
                )));
            }
            word.parse::<u64>()
                .map_err(|_| usage(format!("{} is not a certificate serial", shown(word))))
        })
        .collect()
}

/// One line per serial asked, in order: `SERIAL live|revoked|expired|unknown VALID_BEFORE`,
/// VALID_BEFORE in Unix seconds or `-` when the serial is unknown.
pub(super) async fn run(ctx: &mut Ctx, serials: Vec<u64>) -> Outcome {
    let found = ctx.call(move |a, _| a.status(&serials)).await?;
    let mut text = String::with_capacity(found.len() * 32);
    for s in found {
        let valid_before = s
            .valid_before
            .map_or_else(|| "-".to_string(), |t| t.timestamp().to_string());
        text.push_str(&format!(
            "{} {} {valid_before}\n",
            s.serial,
            s.state.as_str()
        ));
    }
    ctx.out.stdout(text).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn usage_of(line: &str) -> String {
        match parse(&words(line)) {
            Err(Failure::Usage(m)) => m,
            other => panic!("expected a usage error for {line:?}, got {other:?}"),
        }
    }

    #[test]
    fn serials_are_numbers_in_bounds() {
        assert_eq!(
            parse(&words("1 42 18446744073709551615")).unwrap(),
            [1, 42, u64::MAX]
        );
        assert_eq!(parse(&words("7 7")).unwrap(), [7, 7]);
        assert!(usage_of("").starts_with("missing SERIAL"));
        for bad in [
            "x",
            "-1",
            "+1",
            "1.5",
            "0x10",
            "18446744073709551616",
            "--json",
        ] {
            let m = usage_of(&format!("1 {bad}"));
            assert!(m.contains("is not a certificate serial"), "{bad}: {m}");
            assert!(m.ends_with("usage: status SERIAL..."), "{m}");
            assert!(!m.contains('\n'));
        }
        let many = vec!["1".to_string(); MAX_SERIALS];
        assert_eq!(parse(&many).unwrap().len(), MAX_SERIALS);
        let too_many = vec!["1".to_string(); MAX_SERIALS + 1];
        assert!(matches!(parse(&too_many), Err(Failure::Usage(m)) if m.contains("at most 1000")));
    }
}

//! `quorate txn`: parses etcdctl's transaction text (compares, a blank line, success requests,
//! a blank line, failure requests) into a `TxnRequest`, so scripts written for
//! `etcdctl txn` run unchanged.
//!
//! ```text
//! mod("k1") > "0"
//! value("k2") = "v"
//!
//! put k1 "new value"
//! get k2
//!
//! del k1 --prefix
//! ```

use anyhow::{Context, anyhow, bail};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use base::keys::prefix_end;

/// Parses the three sections of a transaction from `text`.
pub fn parse(text: &str) -> anyhow::Result<TxnRequest> {
    let mut sections: Vec<Vec<(usize, &str)>> = vec![Vec::new()];
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            if sections.len() == 3 {
                break;
            }
            sections.push(Vec::new());
        } else {
            sections
                .last_mut()
                .expect("one section")
                .push((number + 1, line));
        }
    }
    sections.resize(3, Vec::new());
    let at = |number: usize| format!("line {number}");
    let compare = sections[0]
        .iter()
        .map(|(n, line)| parse_compare(line).with_context(|| at(*n)))
        .collect::<anyhow::Result<_>>()?;
    let success = sections[1]
        .iter()
        .map(|(n, line)| parse_request(line).with_context(|| at(*n)))
        .collect::<anyhow::Result<_>>()?;
    let failure = sections[2]
        .iter()
        .map(|(n, line)| parse_request(line).with_context(|| at(*n)))
        .collect::<anyhow::Result<_>>()?;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

/// Parses `target("key") op "value"`, with etcdctl's target names and operators.
fn parse_compare(line: &str) -> anyhow::Result<Compare> {
    let malformed =
        || anyhow!("malformed comparison {line:?}: expected target(\"key\") op \"value\"");
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let words = split_words(rest)?;
    let [key, op, value] = words.as_slice() else {
        return Err(malformed());
    };
    let key = key.strip_suffix(')').ok_or_else(malformed)?;
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        other => bail!("unknown comparison operator {other:?} (expected =, !=, < or >)"),
    };
    let number = || {
        value
            .parse::<i64>()
            .with_context(|| format!("{target} compares against a number, not {value:?}"))
    };
    let (target, union) = match target.trim() {
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(value.clone().into_bytes()),
        ),
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number()?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number()?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number()?)),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number()?)),
        other => bail!(
            "unknown comparison target {other:?} (expected value, version, create, mod or lease)"
        ),
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// Parses one request: `put KEY VALUE`, `get KEY [END]` or `del KEY [END]`, with flags.
///
/// Long because it is etcdctl's request grammar, one arm per request kind with its flags.
fn parse_request(line: &str) -> anyhow::Result<RequestOp> {
    let words = split_words(line)?;
    let (verb, rest) = words.split_first().context("empty request")?;
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    for word in rest {
        match word.strip_prefix("--") {
            Some(flag) => flags.push(flag.split_once('=').map_or_else(
                || (flag.to_string(), None),
                |(name, value)| (name.to_string(), Some(value.to_string())),
            )),
            None => positional.push(word.clone()),
        }
    }
    let has = |name: &str| flags.iter().any(|(flag, _)| flag == name);
    let number = |name: &str| -> anyhow::Result<i64> {
        match flags.iter().find(|(flag, _)| flag == name) {
            Some((_, Some(value))) => value
                .parse()
                .with_context(|| format!("--{name} takes a number, not {value:?}")),
            Some((_, None)) => bail!("--{name} needs a value (--{name}=N)"),
            None => Ok(0),
        }
    };
    let known = |allowed: &[&str]| -> anyhow::Result<()> {
        match flags
            .iter()
            .find(|(flag, _)| !allowed.contains(&flag.as_str()))
        {
            Some((flag, _)) => bail!("{verb} does not take --{flag}"),
            None => Ok(()),
        }
    };
    let range = |positional: &[String]| -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let key = positional
            .first()
            .context("missing key")?
            .as_bytes()
            .to_vec();
        if positional.len() > 2 {
            bail!("{verb} takes a key and an optional range end");
        }
        let end = if has("prefix") {
            if key.is_empty() {
                return Ok((vec![0], vec![0]));
            }
            prefix_end(&key)
        } else if has("from-key") {
            vec![0]
        } else {
            positional
                .get(1)
                .map(|end| end.as_bytes().to_vec())
                .unwrap_or_default()
        };
        Ok((key, end))
    };
    let request = match verb.as_str() {
        "put" => {
            known(&["prev-kv", "lease", "ignore-value", "ignore-lease"])?;
            let ignore_value = has("ignore-value");
            let expected = if ignore_value { 1 } else { 2 };
            if positional.len() != expected {
                bail!("put takes a key and a value (or only a key with --ignore-value)");
            }
            Op::RequestPut(PutRequest {
                key: positional[0].as_bytes().to_vec(),
                value: positional
                    .get(1)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default(),
                lease: lease_id(&flags)?,
                prev_kv: has("prev-kv"),
                ignore_value,
                ignore_lease: has("ignore-lease"),
            })
        }
        "get" => {
            known(&[
                "prefix",
                "from-key",
                "rev",
                "limit",
                "keys-only",
                "count-only",
                "serializable",
            ])?;
            let (key, range_end) = range(&positional)?;
            Op::RequestRange(RangeRequest {
                key,
                range_end,
                limit: number("limit")?,
                revision: number("rev")?,
                keys_only: has("keys-only"),
                count_only: has("count-only"),
                serializable: has("serializable"),
                ..Default::default()
            })
        }
        "del" | "delete" => {
            known(&["prefix", "from-key", "prev-kv"])?;
            let (key, range_end) = range(&positional)?;
            Op::RequestDeleteRange(DeleteRangeRequest {
                key,
                range_end,
                prev_kv: has("prev-kv"),
            })
        }
        other => bail!("unknown request {other:?} (expected put, get or del)"),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// A lease id as etcdctl writes it: hexadecimal.
fn lease_id(flags: &[(String, Option<String>)]) -> anyhow::Result<i64> {
    match flags.iter().find(|(flag, _)| flag == "lease") {
        Some((_, Some(value))) => {
            let digits = value.trim_start_matches("0x");
            u64::from_str_radix(digits, 16)
                .map(|id| id as i64)
                .with_context(|| format!("--lease takes a hexadecimal lease id, not {value:?}"))
        }
        Some((_, None)) => bail!("--lease needs a value (--lease=ID)"),
        None => Ok(0),
    }
}

/// Splits a line into words; double-quoted words may hold spaces and `\"`, `\\`, `\n`, `\t`.
fn split_words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => bail!("unterminated quote in {line:?}"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('t') => word.push('\t'),
                        Some(c @ ('"' | '\\')) => word.push(c),
                        Some(c) => bail!("unknown escape \\{c} in {line:?}"),
                        None => bail!("unterminated quote in {line:?}"),
                    },
                    Some(c) => word.push(c),
                }
            }
            // A quoted key may be followed directly by `)`, as in value("k").
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_sections_as_etcdctl_does() {
        let text = "mod(\"k1\") > \"0\"\nvalue(\"k 2\") = \"a b\"\n\nput k1 \"new value\"\nget k2 --prefix\n\ndel k1 --prev-kv\n";
        let txn = parse(text).expect("parse");
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(txn.compare[0].key, b"k1");
        assert_eq!(txn.compare[0].target, CompareTarget::Mod as i32);
        assert_eq!(txn.compare[0].result, CompareResult::Greater as i32);
        assert_eq!(
            txn.compare[0].target_union,
            Some(TargetUnion::ModRevision(0))
        );
        assert_eq!(txn.compare[1].key, b"k 2");
        assert_eq!(
            txn.compare[1].target_union,
            Some(TargetUnion::Value(b"a b".to_vec()))
        );
        let Some(Op::RequestPut(put)) = &txn.success[0].request else {
            panic!("expected put");
        };
        assert_eq!(
            (put.key.as_slice(), put.value.as_slice()),
            (&b"k1"[..], &b"new value"[..])
        );
        let Some(Op::RequestRange(get)) = &txn.success[1].request else {
            panic!("expected get");
        };
        assert_eq!(get.range_end, b"k3");
        let Some(Op::RequestDeleteRange(del)) = &txn.failure[0].request else {
            panic!("expected del");
        };
        assert!(del.prev_kv);
    }

    #[test]
    fn empty_sections_are_allowed() {
        let txn = parse("\nput a b\n").expect("parse");
        assert!(txn.compare.is_empty());
        assert_eq!(txn.success.len(), 1);
        assert!(txn.failure.is_empty());
    }

    #[test]
    fn numeric_targets_and_operators() {
        let txn = parse("ver(\"a\") != \"3\"\nc(\"a\") < 7\nlease(\"a\") = \"0\"\n").unwrap();
        assert_eq!(txn.compare[0].target_union, Some(TargetUnion::Version(3)));
        assert_eq!(txn.compare[0].result, CompareResult::NotEqual as i32);
        assert_eq!(
            txn.compare[1].target_union,
            Some(TargetUnion::CreateRevision(7))
        );
        assert_eq!(txn.compare[2].target, CompareTarget::Lease as i32);
    }

    #[test]
    fn mistakes_get_a_message_with_the_line() {
        let cases = [
            ("size(\"a\") = \"1\"\n", "line 1"),
            ("version(\"a\") = \"x\"\n", "number"),
            ("value(\"a\") ~ \"1\"\n", "operator"),
            ("\nfrob a\n", "line 2"),
            ("\nput a\n", "line 2"),
            ("\nget a --bogus\n", "--bogus"),
            ("\nput a \"b\n", "line 2"),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", parse(text).unwrap_err());
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}

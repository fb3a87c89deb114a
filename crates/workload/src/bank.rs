//! The `bank` workload's operations: transfers between accounts as compare-and-put
//! transactions on the accounts' modification revisions, after a linearizable read of every
//! balance (recorded as a read), and the opening of the accounts.

use std::collections::BTreeMap;

use check::EventType;
use proto::etcdserverpb::compare::{CompareTarget, TargetUnion};
use rand::Rng;
use serde_json::{Value, json};

use crate::{
    BANK_ACCOUNTS, BANK_OPENING_BALANCE, BANK_PREFIX, Client, Completion, equals, prefix_range,
    put_op, register_value,
};

impl Client {
    pub(crate) async fn bank_op(&mut self) -> EventType {
        // Every operation starts with a snapshot read of all balances, recorded as a read.
        let (read_type, balances) = self.bank_read().await;
        if read_type != EventType::Ok {
            return read_type;
        }
        let from = self.rng.random_range(0..BANK_ACCOUNTS);
        let to = (from + self.rng.random_range(1..BANK_ACCOUNTS)) % BANK_ACCOUNTS;
        let amount = self.rng.random_range(1..=5i64);
        let (from_key, to_key) = (account_key(from), account_key(to));
        let (Some(&(from_balance, from_rev)), Some(&(to_balance, to_rev))) =
            (balances.get(&from_key), balances.get(&to_key))
        else {
            return EventType::Ok;
        };
        if from_balance < amount {
            return EventType::Ok;
        }
        let transfer = json!({"from": from_key, "to": to_key, "amount": amount});
        self.invoke("transfer", None, transfer);
        let unchanged = |key: &str, rev: i64| {
            equals(
                key.as_bytes(),
                CompareTarget::Mod,
                TargetUnion::ModRevision(rev),
            )
        };
        let balance =
            |key: &str, balance: i64| put_op(key.as_bytes(), balance.to_string().into_bytes());
        let compare = vec![unchanged(&from_key, from_rev), unchanged(&to_key, to_rev)];
        let puts = vec![
            balance(&from_key, from_balance - amount),
            balance(&to_key, to_balance + amount),
        ];
        let completion = self.put_if(compare, puts).await;
        self.complete("transfer", None, completion)
    }

    /// A linearizable read of every balance; returns each account's balance and revision.
    pub async fn bank_read(&mut self) -> (EventType, BTreeMap<String, (i64, i64)>) {
        self.invoke("read", None, Value::Null);
        let mut balances = BTreeMap::new();
        let completion = match self.kv.range(prefix_range(BANK_PREFIX)).await {
            Ok(response) => {
                let response = response.into_inner();
                let mut shown = serde_json::Map::new();
                for kv in &response.kvs {
                    let account = String::from_utf8_lossy(&kv.key).into_owned();
                    let value = register_value(&kv.value);
                    if let Some(balance) = value.as_i64() {
                        balances.insert(account.clone(), (balance, kv.mod_revision));
                    }
                    shown.insert(account, value);
                }
                Completion::ok(Value::Object(shown), response.header)
            }
            Err(status) => Completion::read_error(&status),
        };
        (self.complete("read", None, completion), balances)
    }

    /// Opens the bank's accounts in one transaction, recorded as `init`.
    pub async fn bank_init(&mut self) -> EventType {
        let opening: serde_json::Map<String, Value> = (0..BANK_ACCOUNTS)
            .map(|i| (account_key(i), json!(BANK_OPENING_BALANCE)))
            .collect();
        self.invoke("init", None, Value::Object(opening));
        let puts = (0..BANK_ACCOUNTS)
            .map(|i| {
                let balance = BANK_OPENING_BALANCE.to_string().into_bytes();
                put_op(account_key(i).as_bytes(), balance)
            })
            .collect();
        // No comparison: the transaction always succeeds when it commits.
        let completion = self.put_if(Vec::new(), puts).await;
        self.complete("init", None, completion)
    }
}

fn account_key(i: usize) -> String {
    format!("{BANK_PREFIX}a{i}")
}

//! `users:` (names, SSH public keys, groups) and `hosts:` (host groups): the mappings whose
//! names the rules refer to. Both are read in file order with repeats kept, so that a name
//! defined twice is reported at its second definition instead of silently replacing the first.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::groups::name_list;
use crate::decide::User;
use crate::document::Problems;
use crate::keys::{UserKey, parse_key_line};
use crate::locate::YamlPath;
use crate::names::{check_host_name, check_name, show};

/// `users:` as written.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct RawUsers(NamedMap<RawUser>);

/// `hosts:` as written.
#[derive(Deserialize, Default)]
#[serde(transparent)]
pub struct RawHostGroups(NamedMap<Vec<String>>);

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a user: a mapping with keys and groups"
)]
struct RawUser {
    keys: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// A YAML mapping kept in file order, repeated keys included.
struct NamedMap<T>(Vec<(String, T)>);

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = NamedMap<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    entries.push(entry);
                }
                Ok(NamedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Whether `name` under `path` repeats an earlier one (reported at its own line); counts it.
fn repeated(
    seen: &mut HashMap<String, usize>,
    name: &str,
    path: &YamlPath,
    what: &str,
    problems: &mut Problems<'_>,
) -> bool {
    let occurrence = seen.entry(name.to_string()).or_insert(0);
    *occurrence += 1;
    if *occurrence > 1 {
        problems.at_nth(
            path,
            *occurrence - 1,
            format_args!("{what} {} is defined more than once", show(name)),
        );
    }
    *occurrence > 1
}

pub(super) fn validate_users(raw: RawUsers, problems: &mut Problems<'_>) -> Vec<User> {
    let users_path = YamlPath::root().key("users");
    let mut users: Vec<User> = Vec::new();
    let mut seen = HashMap::new();
    // Who holds each key, to refuse a key that would identify two users (or one twice).
    let mut key_owner: HashMap<UserKey, YamlPath> = HashMap::new();
    for (name, raw_user) in raw.0.0 {
        let path = users_path.key(&name);
        if repeated(&mut seen, &name, &path, "user", problems) {
            continue;
        }
        if let Err(e) = check_name(&name) {
            problems.at(&path, e);
        }
        let mut keys = Vec::new();
        for (i, line) in raw_user.keys.iter().enumerate() {
            let key_path = path.key("keys").index(i);
            let key = match parse_key_line(line) {
                Ok(key) => key,
                Err(e) => {
                    problems.at(&key_path, e);
                    continue;
                }
            };
            if let Some(owner) = key_owner.get(&key) {
                problems.at(
                    &key_path,
                    format_args!("the same key as {owner}; a key must identify exactly one user"),
                );
                continue;
            }
            key_owner.insert(key.clone(), key_path);
            keys.push(key);
        }
        name_list(&raw_user.groups, &path.key("groups"), "group", problems);
        users.push(User {
            name,
            keys,
            groups: raw_user.groups,
        });
    }
    users
}

pub(super) fn validate_host_groups(
    raw: RawHostGroups,
    problems: &mut Problems<'_>,
) -> Vec<(String, Vec<String>)> {
    let hosts_path = YamlPath::root().key("hosts");
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen = HashMap::new();
    for (name, hosts) in raw.0.0 {
        let path = hosts_path.key(&name);
        if repeated(&mut seen, &name, &path, "host group", problems) {
            continue;
        }
        if let Err(e) = check_name(&name) {
            problems.at(&path, e);
        }
        if hosts.is_empty() {
            problems.at(&path, "lists no hosts");
        }
        for (i, host) in hosts.iter().enumerate() {
            let host_path = path.index(i);
            if let Err(e) = check_host_name(host) {
                problems.at(&host_path, e);
            } else if hosts[..i].contains(host) {
                problems.at(&host_path, format_args!("host {host} is listed twice"));
            }
        }
        groups.push((name, hosts));
    }
    groups
}

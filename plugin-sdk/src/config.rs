//! The plugin's configuration: the `[plugins.config]` table of its entry in the gateway's config,
//! handed to `init` as JSON.

use core::fmt;

use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps object members in file order (so that tables read back in the order the
/// operator wrote them, without serde_json's `preserve_order` feature).
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "a table",
        }
    }

    /// Text of a scalar as the WIT `config.get` gives it: strings unquoted, numbers and booleans as
    /// written.
    fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
                Ok(Value::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
                Ok(Value::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(Value::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut members: Vec<(String, Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    // A repeated key replaces the earlier value in place, like a JSON object does.
                    match members.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => members.push((k, v)),
                    }
                }
                Ok(Value::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// The plugin's configuration: the `[plugins.config]` table of its entry in the gateway's config
/// file (a JSON object; empty when the deployment gives none).
///
/// Paths are dotted keys, as in the WIT `config` interface: `tenant`, `headers.X-Tenant`,
/// `rules.0.action` (list elements by index); the empty path is the whole table. A key that itself
/// contains a dot cannot be reached by path; use [`Config::parse`] instead.
///
/// The `get_*` getters are lenient: a missing key or a value of another type gives `None` (or an
/// empty list). The `require_*`, [`Config::list`] and [`Config::table`] variants return an error
/// for people instead, for a `new` that refuses a bad config.
#[derive(Clone, Debug)]
pub struct Config {
    json: String,
    root: Value,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            json: "{}".to_owned(),
            root: Value::Object(Vec::new()),
        }
    }
}

impl Config {
    /// Parses the config text `init` receives. An empty text counts as `{}`; anything other than a
    /// JSON object is an error.
    pub fn from_json(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let root: Value =
            serde_json::from_str(json).map_err(|e| format!("config is not valid JSON: {e}"))?;
        if !matches!(root, Value::Object(_)) {
            return Err(format!("config must be a table, found {}", root.kind()));
        }
        Ok(Self {
            json: json.to_owned(),
            root,
        })
    }

    /// The whole config as JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Deserializes the whole config into `T` (e.g. a `#[derive(Deserialize)]` struct with
    /// `#[serde(rename_all = "kebab-case")]`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.json).map_err(|e| format!("invalid plugin config: {e}"))
    }

    fn lookup(&self, path: &str) -> Option<&Value> {
        let mut v = &self.root;
        if path.is_empty() {
            return Some(v);
        }
        for part in path.split('.') {
            v = match v {
                Value::Object(members) => {
                    members.iter().find(|(k, _)| k == part).map(|(_, v)| v)?
                }
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// True if something (anything but JSON null) is at `path`.
    pub fn contains(&self, path: &str) -> bool {
        !matches!(self.lookup(path), None | Some(Value::Null))
    }

    /// The string at `path`; `None` if missing or not a string.
    pub fn get_str(&self, path: &str) -> Option<&str> {
        match self.lookup(path)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean at `path`; `None` if missing or not a boolean.
    pub fn get_bool(&self, path: &str) -> Option<bool> {
        match self.lookup(path)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The non-negative integer at `path`; `None` if missing or not such a number.
    pub fn get_u64(&self, path: &str) -> Option<u64> {
        match self.lookup(path)? {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The scalar at `path` as text (strings unquoted, numbers and booleans as written), like the WIT
    /// `config.get`; `None` if missing, or a table or list.
    pub fn get_text(&self, path: &str) -> Option<String> {
        self.lookup(path)?.scalar_text()
    }

    /// The keys of the table at `path` in file order, or the indexes (`0`, `1`, ...) of the list at
    /// `path`; empty if `path` names a scalar or nothing.
    pub fn keys(&self, path: &str) -> Vec<String> {
        match self.lookup(path) {
            Some(Value::Object(members)) => members.iter().map(|(k, _)| k.clone()).collect(),
            Some(Value::Array(items)) => (0..items.len()).map(|i| i.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    /// The list of scalars at `path` as text, in order; empty if missing or not a list. Items that
    /// are not scalars are skipped. See [`Config::list`] for the strict form.
    pub fn get_list(&self, path: &str) -> Vec<String> {
        match self.lookup(path) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::scalar_text).collect(),
            _ => Vec::new(),
        }
    }

    /// The table of scalars at `path` as `(key, text)` pairs in file order; empty if missing or not
    /// a table. Members that are not scalars are skipped. See [`Config::table`] for the strict form.
    pub fn get_table(&self, path: &str) -> Vec<(String, String)> {
        match self.lookup(path) {
            Some(Value::Object(members)) => members
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.scalar_text()?)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The string at `path`; an error naming the path if it is missing or not a string.
    pub fn require_str(&self, path: &str) -> Result<&str, String> {
        match self.lookup(path) {
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(format!(
                "config `{path}`: expected a string, found {}",
                v.kind()
            )),
            None => Err(format!("config `{path}`: missing (a string is required)")),
        }
    }

    /// Like [`Config::get_str`], but a value of another type is an error (a missing one is `None`).
    pub fn opt_str(&self, path: &str) -> Result<Option<&str>, String> {
        match self.lookup(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(format!(
                "config `{path}`: expected a string, found {}",
                v.kind()
            )),
        }
    }

    /// Like [`Config::get_list`], but anything other than a list of scalars is an error (a missing
    /// list is empty).
    pub fn list(&self, path: &str) -> Result<Vec<String>, String> {
        match self.lookup(path) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.scalar_text().ok_or_else(|| {
                        format!("config `{path}.{i}`: expected a string, found {}", v.kind())
                    })
                })
                .collect(),
            Some(v) => Err(format!(
                "config `{path}`: expected a list, found {}",
                v.kind()
            )),
        }
    }

    /// Like [`Config::get_table`], but anything other than a table of scalars is an error (a
    /// missing table is empty).
    pub fn table(&self, path: &str) -> Result<Vec<(String, String)>, String> {
        match self.lookup(path) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(members)) => members
                .iter()
                .map(|(k, v)| {
                    let text = v.scalar_text().ok_or_else(|| {
                        format!("config `{path}.{k}`: expected a string, found {}", v.kind())
                    })?;
                    Ok((k.clone(), text))
                })
                .collect(),
            Some(v) => Err(format!(
                "config `{path}`: expected a table, found {}",
                v.kind()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "tenant": "acme", "debug": true, "limit": 42, "neg": -1, "ratio": 0.5,
        "headers": {"Zeta": "1", "Alpha": "two", "Mid": 3, "Flag": false, "Nested": {"x": 1}},
        "names": ["X-A", "X-B", 7],
        "rules": [{"match": "sip:*@a", "action": "pass"}, {"action": "reject", "status": 486}]
    }"#;

    fn cfg() -> Config {
        Config::from_json(SAMPLE).unwrap()
    }

    #[test]
    fn scalars() {
        let c = cfg();
        assert_eq!(c.get_str("tenant"), Some("acme"));
        assert_eq!(c.get_str("limit"), None);
        assert_eq!(c.get_str("missing"), None);
        assert_eq!(c.get_bool("debug"), Some(true));
        assert_eq!(c.get_bool("tenant"), None);
        assert_eq!(c.get_u64("limit"), Some(42));
        assert_eq!(c.get_u64("neg"), None);
        assert_eq!(c.get_text("ratio").as_deref(), Some("0.5"));
        assert_eq!(c.get_text("debug").as_deref(), Some("true"));
        assert_eq!(c.get_text("headers"), None);
        assert!(c.contains("rules.1.status"));
        assert!(!c.contains("rules.2"));
    }

    #[test]
    fn dotted_paths() {
        let c = cfg();
        assert_eq!(c.get_str("headers.Alpha"), Some("two"));
        assert_eq!(c.get_str("rules.0.action"), Some("pass"));
        assert_eq!(c.get_u64("rules.1.status"), Some(486));
        assert_eq!(c.get_str("rules.x.action"), None);
        assert_eq!(c.get_str("tenant.x"), None);
        assert_eq!(c.keys("rules"), ["0", "1"]);
        assert_eq!(c.keys("")[..3], ["tenant", "debug", "limit"]);
        assert!(c.keys("tenant").is_empty());
    }

    #[test]
    fn lists_and_tables_keep_file_order() {
        let c = cfg();
        assert_eq!(c.get_list("names"), ["X-A", "X-B", "7"]);
        assert!(c.get_list("tenant").is_empty());
        assert_eq!(
            c.get_table("headers"),
            [
                ("Zeta".to_owned(), "1".to_owned()),
                ("Alpha".to_owned(), "two".to_owned()),
                ("Mid".to_owned(), "3".to_owned()),
                ("Flag".to_owned(), "false".to_owned()),
            ]
        );
        assert!(c.get_table("missing").is_empty());
    }

    #[test]
    fn strict_forms_explain() {
        let c = cfg();
        assert_eq!(c.list("missing"), Ok(vec![]));
        assert_eq!(
            c.list("tenant").unwrap_err(),
            "config `tenant`: expected a list, found a string"
        );
        assert_eq!(
            c.table("headers").unwrap_err(),
            "config `headers.Nested`: expected a string, found a table"
        );
        assert_eq!(c.require_str("tenant"), Ok("acme"));
        assert_eq!(
            c.require_str("nope").unwrap_err(),
            "config `nope`: missing (a string is required)"
        );
        assert_eq!(c.opt_str("nope"), Ok(None));
        assert!(c.opt_str("limit").is_err());
    }

    #[test]
    fn empty_and_bad_text() {
        assert!(Config::from_json("").unwrap().keys("").is_empty());
        assert!(Config::from_json("{}").unwrap().keys("").is_empty());
        assert!(
            Config::from_json("[1]")
                .unwrap_err()
                .contains("must be a table")
        );
        assert!(
            Config::from_json("{")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn typed_parse() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct Typed {
            tenant: String,
            limit: u32,
            #[serde(default)]
            other_thing: Option<String>,
        }
        let t: Typed = cfg().parse().unwrap();
        assert_eq!(
            (t.tenant.as_str(), t.limit, t.other_thing),
            ("acme", 42, None)
        );
        let err = Config::from_json(r#"{"tenant": 1}"#)
            .unwrap()
            .parse::<Typed>()
            .unwrap_err();
        assert!(
            err.starts_with("invalid plugin config: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn repeated_key_replaces_in_place() {
        let c = Config::from_json(r#"{"t": {"a": "1", "b": "2", "a": "3"}}"#).unwrap();
        assert_eq!(
            c.get_table("t"),
            [
                ("a".to_owned(), "3".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
    }
}

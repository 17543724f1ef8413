//! Human tables or JSON.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn json(&self, value: &serde_json::Value) {
        println!("{value}");
    }

    /// A table for humans, or the `json` value for scripts.
    pub fn table(&self, header: &[&str], rows: Vec<Vec<String>>, json: serde_json::Value) {
        if self.json {
            self.json(&json);
        } else {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_header(header.to_vec());
            for row in rows {
                table.add_row(row);
            }
            println!("{table}");
        }
    }

    /// Name/value pairs: a two-column table, or one JSON object.
    pub fn fields(&self, pairs: Vec<(&str, serde_json::Value)>) {
        if self.json {
            let object: serde_json::Map<String, serde_json::Value> =
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            self.json(&serde_json::Value::Object(object));
        } else {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            for (k, v) in pairs {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                table.add_row(vec![k.to_owned(), text]);
            }
            println!("{table}");
        }
    }

    /// A line of progress or advice for humans (stderr, so JSON stays clean).
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
    }
}

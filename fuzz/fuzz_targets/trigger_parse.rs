//! Envelope parsing: any JSON document given to the handler is split into messages and items
//! without panicking; every error renders as a message.
#![no_main]

use export_fetcher::trigger::{self, Item};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match trigger::parse(&event) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(parsed) => {
            for m in parsed.messages {
                match m.items {
                    Err(e) => {
                        let _ = (e.to_string(), e.is_transient());
                    }
                    Ok(items) => {
                        for item in items {
                            if let Item::Object(ev) = item {
                                let _ = export_fetcher::sanitize_for_log(&ev.key);
                                let _ = export_fetcher::detect::kind_from_key(&ev.key);
                            }
                        }
                    }
                }
            }
        }
    }
});

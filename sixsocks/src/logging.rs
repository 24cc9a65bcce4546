//! Log lines on stderr, as text or as one JSON object per line, and the
//! guard that keeps a text line one line.
//!
//! Peers choose much of what a log line shows: target names, user names,
//! the reasons resolvers and upstreams give. A `\n` in any of them would
//! end the line early and let the rest pose as a line of its own (a forged
//! `session end`, say). Names are escaped where they are shown
//! (`sixsocks_proto::ShownName`), but a text line has many sources, so the
//! last word is here, where every text line passes: [`OneLine`] escapes
//! every control character of an event (`\n` → `\\n`, `\r`, `\t`, others as
//! `\x1b`-style hex), except the line's own final newline and, when colours
//! are on, the escape character of the formatter's own colour codes. JSON
//! lines need no guard: the JSON encoder escapes strings.
//!
//! While `serve` runs, lines below WARN are held in memory and written in
//! batches ([`hold_lines`]): when a runtime thread goes idle
//! (`on_thread_park` calls [`flush_lines`]), when 16 KiB are held, or
//! when the oldest held line is 200 ms old. A busy server logs a `session
//! end` line per connection; written one by one, that was a `write` to
//! stderr per connection, and at 32 connecting workers it cost about a
//! third of the proxy's CPU per connection (bench/README.md). A warning or
//! an error is written at once, after the lines held before it, so the
//! order stays.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};

use sixsocks_server::config::LogFormat;
use tracing_subscriber::fmt::MakeWriter;

/// Log to stderr, as text or as one JSON object per line.
pub fn init(verbose: u8, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let ansi = io::stderr().is_terminal();
            fmt.with_writer(OneLine { ansi, escape: true })
                .with_ansi(ansi)
                .with_timer(crate::log_text::LineTime)
                .fmt_fields(crate::log_text::LineFields)
                .init()
        }
        // The event's fields at the top level (`{"timestamp":..,"level":..,
        // "message":"session end","client":..}`). The logger's target is
        // left out: the session line has a field named `target` (the
        // destination), and a JSON object must not have the key twice.
        LogFormat::Json => fmt
            .with_writer(OneLine {
                ansi: false,
                escape: false,
            })
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_ansi(false)
            .init(),
    }
}

/// The stderr writer: keeps each text event on one line (see the module
/// docs) and holds lines while [`hold_lines`] is on. The formatter writes
/// an event as one buffer ending in `\n`, in one `write_all`.
#[derive(Clone, Copy, Debug)]
pub struct OneLine {
    /// Colour codes are on: `ESC` is the formatter's own.
    pub ansi: bool,
    /// Escape control characters (text lines; JSON escapes its own).
    pub escape: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter;
    fn make_writer(&'a self) -> OneLineWriter {
        OneLineWriter {
            ansi: self.ansi,
            escape: self.escape,
            urgent: true,
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> OneLineWriter {
        OneLineWriter {
            ansi: self.ansi,
            escape: self.escape,
            urgent: matches!(*meta.level(), Level::ERROR | Level::WARN),
        }
    }
}

pub struct OneLineWriter {
    ansi: bool,
    escape: bool,
    /// Written at once, never held.
    urgent: bool,
}

impl Write for OneLineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = if self.escape {
            escape_event(buf, self.ansi)
        } else {
            Cow::Borrowed(buf)
        };
        emit(&mut io::stderr(), &line, self.urgent)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Lines held, oldest first, and when the oldest was held.
struct Held {
    lines: Vec<u8>,
    since: Option<Instant>,
}

static HELD: Mutex<Held> = Mutex::new(Held {
    lines: Vec::new(),
    since: None,
});
static HOLDING: AtomicBool = AtomicBool::new(false);

/// Held lines are written once they are this many bytes…
const HOLD_BYTES: usize = 16 * 1024;
/// …or the oldest is this old (checked at the next line or idle moment).
const HOLD_FOR: Duration = Duration::from_millis(200);

/// From now on, hold lines below WARN and write them in batches (see the
/// module docs); a panic writes what is held before its message.
pub fn hold_lines() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush_lines();
        previous(info)
    }));
    HOLDING.store(true, Ordering::Relaxed);
}

/// Stop holding lines and write those held.
pub fn release_lines() {
    HOLDING.store(false, Ordering::Relaxed);
    flush_lines();
}

/// Write the lines held (a runtime thread about to go idle calls this).
pub fn flush_lines() {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    if !held.lines.is_empty() {
        let _ = write_held(&mut io::stderr(), &mut held);
    }
}

/// Hold `line`, or write it (after what is held) if it is urgent, if
/// lines are not being held, or if the batch is big or old enough.
fn emit(out: &mut impl Write, line: &[u8], urgent: bool) -> io::Result<()> {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    hold_or_write(
        out,
        &mut held,
        line,
        urgent || !HOLDING.load(Ordering::Relaxed),
    )
}

fn hold_or_write(out: &mut impl Write, held: &mut Held, line: &[u8], now: bool) -> io::Result<()> {
    let since = *held.since.get_or_insert_with(Instant::now);
    held.lines.extend_from_slice(line);
    if now || held.lines.len() >= HOLD_BYTES || since.elapsed() >= HOLD_FOR {
        write_held(out, held)
    } else {
        Ok(())
    }
}

/// Write the held lines in one `write_all`; on failure they are dropped
/// (a closed stderr must not make them pile up).
fn write_held(out: &mut impl Write, held: &mut Held) -> io::Result<()> {
    let result = out.write_all(&held.lines);
    held.lines.clear();
    held.since = None;
    if held.lines.capacity() > 4 * HOLD_BYTES {
        held.lines.shrink_to(HOLD_BYTES);
    }
    result
}

/// `event` with every control character escaped (C0, DEL, C1 and the
/// Unicode line and paragraph separators, which some viewers break lines
/// at) but a final `\n`, and `ESC` when `ansi`.
pub fn escape_event(event: &[u8], ansi: bool) -> Cow<'_, [u8]> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    // The common line, plain ASCII without a control character, is
    // written as it is: one pass over its bytes, no copy.
    let plain = |b: &u8| (0x20..0x7f).contains(b) || (ansi && *b == 0x1b);
    if body.iter().all(plain) {
        return Cow::Borrowed(event);
    }
    let text = String::from_utf8_lossy(body);
    let bad = |c: char| {
        (c.is_control() && !(ansi && c == '\x1b')) || matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !text.chars().any(bad) {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(event.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if bad(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if bad(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    let mut out = out.into_bytes();
    out.extend_from_slice(end);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape_event as escape;
    use super::{hold_or_write, write_held, Held, HOLD_BYTES};

    fn held() -> Held {
        Held {
            lines: Vec::new(),
            since: None,
        }
    }

    #[test]
    fn held_lines_are_written_in_order_in_batches() {
        let mut out = Vec::new();
        let mut h = held();
        hold_or_write(&mut out, &mut h, b"one\n", false).unwrap();
        hold_or_write(&mut out, &mut h, b"two\n", false).unwrap();
        assert!(out.is_empty(), "held lines are not written yet");
        // An urgent line goes out at once, after those held.
        hold_or_write(&mut out, &mut h, b"WARN three\n", true).unwrap();
        assert_eq!(out, b"one\ntwo\nWARN three\n");
        assert!(h.lines.is_empty() && h.since.is_none());
        // A full batch is written without waiting for an idle moment.
        out.clear();
        let line = [b'x'; 100];
        let mut n = 0;
        while out.is_empty() {
            hold_or_write(&mut out, &mut h, &line, false).unwrap();
            n += 1;
            assert!(n * 100 <= HOLD_BYTES + 100, "never written");
        }
        assert_eq!(out.len(), n * 100);
        // An idle moment writes the rest.
        hold_or_write(&mut out, &mut h, b"last\n", false).unwrap();
        write_held(&mut out, &mut h).unwrap();
        assert!(out.ends_with(b"last\n"));
    }

    #[test]
    fn an_old_batch_is_written_at_the_next_line() {
        let mut out = Vec::new();
        let mut h = held();
        hold_or_write(&mut out, &mut h, b"old\n", false).unwrap();
        h.since = Some(std::time::Instant::now() - super::HOLD_FOR);
        hold_or_write(&mut out, &mut h, b"new\n", false).unwrap();
        assert_eq!(out, b"old\nnew\n");
    }

    fn escape_event(event: &[u8], ansi: bool) -> Vec<u8> {
        escape(event, ansi).into_owned()
    }

    #[test]
    fn an_event_stays_one_line() {
        let forged =
            b"INFO rules: request to evil\n2026-01-01T00:00:00Z INFO session end user=admin\n";
        let out = escape_event(forged, false);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(out.ends_with(b"user=admin\n"));
        assert!(
            String::from_utf8_lossy(&out).contains("evil\\n2026"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(
            escape_event(b"a\rb\tc\x1bd\x7f\n", false),
            b"a\\rb\\tc\\x1bd\\x7f\n"
        );
        // With colours on, the formatter's ESC stays.
        assert_eq!(
            escape_event(b"\x1b[1mINFO\x1b[0m x\n", true),
            b"\x1b[1mINFO\x1b[0m x\n"
        );
        // A clean line is unchanged.
        assert_eq!(escape_event(b"plain line\n", false), b"plain line\n");
        // Non-ASCII text is not a control character; C1 controls and the
        // Unicode line separator are.
        assert_eq!(
            escape_event("naïve\n".as_bytes(), false),
            "naïve\n".as_bytes()
        );
        assert_eq!(
            escape_event("a\u{85}b\u{2028}c\n".as_bytes(), false),
            b"a\\x85b\\u{2028}c\n"
        );
    }
}

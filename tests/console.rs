//! The operator console (issue 11) in a real browser: headless Chromium (Debian's, installed by
//! `scripts/setup.sh`; `CHROMIUM` overrides the path) driven over the DevTools protocol with
//! `headless_chrome`, against the real binary and the fake wa-hub of `tests/common`.
//!
//! Each test records the page's console errors, uncaught exceptions and JavaScript dialogs
//! (an `alert` would mean injected script ran). Screenshots of every view go to
//! `target/console-screenshots/*.png` for a person to look at.
//!
//! The tests run one at a time (a lock): each browser test starts its own Chromium on a
//! two-core machine, and sidecars started at once can race for the same free port.

mod common;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::*;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Emulation, Log, Page, Runtime};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);
const ACME: &str = "WASP-acme-store_myshopify_com";

static ONE_BROWSER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_BROWSER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Where screenshots go: `<target dir>/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("create screenshot dir");
    dir
}

/// A headless Chromium with one tab, and what the page reported.
struct Page1 {
    _browser: Browser,
    tab: Arc<Tab>,
    /// Console errors, failed loads, CSP violations and uncaught exceptions.
    errors: Arc<Mutex<Vec<String>>>,
    /// Messages of JavaScript dialogs (alert/confirm/prompt) the page opened.
    dialogs: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Page1 {
    /// Starts Chromium at `width`×`height` CSS px and opens `url`.
    fn open(url: &str, width: u32, height: u32) -> Self {
        let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "Chromium not found at {bin}: run ./scripts/setup.sh (installs Debian's chromium)"
        );
        let profile = tempfile::tempdir().unwrap();
        let options = LaunchOptions::default_builder()
            .path(Some(PathBuf::from(bin)))
            .headless(true)
            .sandbox(false)
            .user_data_dir(Some(profile.path().to_path_buf()))
            .window_size(Some((width, height)))
            .idle_browser_timeout(Duration::from_secs(300))
            .args(
                [
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    "--hide-scrollbars",
                ]
                .iter()
                .map(OsStr::new)
                .collect(),
            )
            .build()
            .expect("launch options");
        let browser = Browser::new(options).expect("start chromium");
        let tab = browser.new_tab().expect("tab");
        tab.set_default_timeout(T);
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let dialogs: Arc<Mutex<Vec<String>>> = Arc::default();
        let (e2, d2) = (errors.clone(), dialogs.clone());
        tab.add_event_listener(Arc::new(move |event: &Event| match event {
            Event::LogEntryAdded(e) if e.params.entry.level == Log::LogEntryLevel::Error => {
                e2.lock().unwrap().push(format!(
                    "log: {} {}",
                    e.params.entry.text,
                    e.params.entry.url.clone().unwrap_or_default()
                ));
            }
            Event::RuntimeConsoleAPICalled(e)
                if e.params.Type == Runtime::ConsoleAPICalledEventTypeOption::Error =>
            {
                e2.lock()
                    .unwrap()
                    .push(format!("console.error: {:?}", e.params.args));
            }
            Event::RuntimeExceptionThrown(e) => {
                e2.lock()
                    .unwrap()
                    .push(format!("exception: {:?}", e.params.exception_details));
            }
            Event::PageJavascriptDialogOpening(e) => {
                d2.lock().unwrap().push(e.params.message.clone());
            }
            _ => {}
        }))
        .unwrap();
        tab.enable_log().unwrap();
        tab.enable_runtime().unwrap();
        let page = Self {
            _browser: browser,
            tab,
            errors,
            dialogs,
            _profile: profile,
        };
        page.resize(width, height);
        page.tab.navigate_to(url).unwrap();
        page.tab.wait_until_navigated().unwrap();
        page
    }

    /// Sets the viewport (a phone below 600 px: `mobile` emulation).
    fn resize(&self, width: u32, height: u32) {
        self.tab
            .call_method(Emulation::SetDeviceMetricsOverride {
                width,
                height,
                device_scale_factor: 1.0,
                mobile: width < 600,
                scale: None,
                screen_width: None,
                screen_height: None,
                position_x: None,
                position_y: None,
                dont_set_visible_size: None,
                screen_orientation: None,
                viewport: None,
                display_feature: None,
                device_posture: None,
            })
            .unwrap();
    }

    /// Evaluates the expression `js` (awaiting a promise) and returns its value as JSON (null
    /// for undefined). Panics when the expression throws or does not parse.
    fn eval(&self, js: &str) -> Value {
        self.try_eval(js)
            .unwrap_or_else(|e| panic!("evaluate {js}: {e}"))
    }

    /// Like [`Page1::eval`], with the exception (or protocol error) as an error.
    fn try_eval(&self, js: &str) -> Result<Value, String> {
        let out = self
            .tab
            .call_method(Runtime::Evaluate {
                expression: format!("(async () => JSON.stringify(await ({js})))()"),
                return_by_value: Some(true),
                generate_preview: None,
                silent: Some(false),
                await_promise: Some(true),
                include_command_line_api: None,
                user_gesture: Some(false),
                object_group: None,
                context_id: None,
                throw_on_side_effect: None,
                timeout: None,
                disable_breaks: None,
                repl_mode: None,
                allow_unsafe_eval_blocked_by_csp: None,
                unique_context_id: None,
                serialization_options: None,
            })
            .map_err(|e| e.to_string())?;
        if let Some(ex) = out.exception_details {
            return Err(format!("{ex:?}"));
        }
        Ok(match out.result.value {
            Some(Value::String(s)) => serde_json::from_str(&s).unwrap_or(Value::Null),
            _ => Value::Null,
        })
    }

    /// Waits until `js` evaluates to `true`.
    fn wait(&self, what: &str, js: &str) {
        // Exceptions count as "not yet" (e.g. while a reload replaces the document).
        let done = || self.try_eval(js).is_ok_and(|v| v == Value::Bool(true));
        if eventually(T, || done().then_some(())).is_none() {
            let text = self.try_eval("document.body.innerText").unwrap_or_default();
            panic!(
                "page never showed {what} ({js}).\nerrors: {:?}\npage text:\n{}",
                self.errors(),
                text.as_str().unwrap_or_default()
            );
        }
    }

    /// Clicks the element `selector` (a real mouse click at its centre).
    fn click(&self, selector: &str) {
        self.tab
            .wait_for_element(selector)
            .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
            .click()
            .unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// Types `text` into the input `selector` (keyboard events).
    fn type_into(&self, selector: &str, text: &str) {
        self.eval(&format!(
            "document.querySelector({}).value = ''",
            json!(selector)
        ));
        self.tab
            .wait_for_element(selector)
            .unwrap()
            .type_into(text)
            .unwrap();
    }

    /// `textContent` of `selector` ("" when absent).
    fn text(&self, selector: &str) -> String {
        self.eval(&format!(
            "document.querySelector({})?.textContent ?? ''",
            json!(selector)
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    fn dialogs(&self) -> Vec<String> {
        self.dialogs.lock().unwrap().clone()
    }

    /// Saves a PNG screenshot of the viewport as `target/console-screenshots/<name>.png`.
    fn screenshot(&self, name: &str) -> Vec<u8> {
        // Let pending frames (images, layout) settle.
        std::thread::sleep(Duration::from_millis(150));
        let png = self
            .tab
            .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), &png).unwrap();
        png
    }

    /// Whether the document scrolls sideways.
    fn has_horizontal_scroll(&self) -> bool {
        self.eval("document.documentElement.scrollWidth > document.documentElement.clientWidth")
            == Value::Bool(true)
    }
}

/// The fixture webhook of `event` (the `n`-th of that event, from 0).
fn fixture(event: &str, n: usize) -> String {
    webhook_fixtures()
        .into_iter()
        .filter(|w| {
            serde_json::from_str::<Value>(&w.body).unwrap()["event"].as_str() == Some(event)
        })
        .nth(n)
        .unwrap_or_else(|| panic!("fixture {event} #{n}"))
        .body
}

fn post(sc: &Sidecar, body: &str) {
    let r = post_signed(sc, body);
    assert_eq!(r.status().as_u16(), 200, "webhook {body:.80}");
}

fn sidecar(upstream: &FakeUpstream, extra: &str) -> Sidecar {
    Sidecar::start(
        &upstream.base_url(),
        &format!("{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\n{extra}"),
    )
}

fn card(id: &str) -> String {
    format!("article.card[data-id={}]", json!(id))
}

fn assert_clean(page: &Page1) {
    assert_clean_but(page, &[]);
}

/// No console error (except those containing one of `expected`, such as the browser's note
/// on an answer the test asked for) and no dialog.
fn assert_clean_but(page: &Page1, expected: &[&str]) {
    let errors: Vec<String> = page
        .errors()
        .into_iter()
        .filter(|e| !expected.iter().any(|x| e.contains(x)))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert!(page.dialogs().is_empty(), "dialogs: {:?}", page.dialogs());
}

#[test]
fn qr_png_is_shown_as_an_image_and_goes_away_when_the_instance_is_active() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    // `/` redirects to the console.
    let r = client().get(sc.url("/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], "/console/");

    let page = Page1::open(&sc.url("/"), 1280, 900);
    page.wait(
        "the empty list",
        "document.querySelector('#empty')?.hidden === false",
    );
    page.eval("window.__sameDocument = 42");

    post(&sc, &fixture("qr", 0));
    let img = format!("{} img.qr", card(ACME));
    page.wait(
        "the QR image",
        &format!(
            "(() => {{ const i = document.querySelector({}); return !!i && i.complete && i.naturalWidth > 0; }})()",
            json!(img)
        ),
    );
    assert_eq!(page.text(&format!("{} .badge", card(ACME))), "needs QR");
    page.screenshot("instances-qr");
    assert_clean(&page);

    post(&sc, &fixture("authenticated", 0));
    page.wait(
        "the syncing badge",
        &format!(
            "document.querySelector({})?.textContent === 'syncing'",
            json!(format!("{} .badge", card(ACME)))
        ),
    );
    post(&sc, &fixture("ready", 0));
    page.wait(
        "the active badge",
        &format!(
            "document.querySelector({})?.textContent === 'active'",
            json!(format!("{} .badge", card(ACME)))
        ),
    );
    assert_eq!(
        page.eval(&format!("document.querySelector({}) === null", json!(img))),
        Value::Bool(true),
        "the QR is gone"
    );
    assert_eq!(
        page.eval("window.__sameDocument"),
        json!(42),
        "no page reload"
    );
    assert_eq!(page.text("#conn"), "live");
    page.screenshot("instances-active");
    assert_clean(&page);
}

#[test]
fn raw_text_qr_is_rendered_by_the_server_and_decodes_to_the_same_text() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    let text = "2@Xk3pLq9Zr8Tw0VbN1mC4sD7fG2hJ5kL8==,Qm9vYXJkZXJzUHVibGljS2V5MTIz=,SWRlbnRpdHlLZXk0NTY=,QWR2U2VjcmV0Nzg5=";
    let id = "WASP-raw_text";
    post(
        &sc,
        &json!({"event": "qr", "instanceId": id, "data": {"qr": text}}).to_string(),
    );
    post(&sc, &fixture("qr", 0));

    // The route itself: SVG for text, 409 for a PNG, 404 without a QR.
    let r = client()
        .get(sc.url(&format!("/api/instances/{id}/qr.svg")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    assert!(r.text().unwrap().contains("<svg"));
    let (status, body) = get_json(&sc, &format!("/api/instances/{ACME}/qr.svg"));
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("QR is an image"))
    );
    let (status, body) = get_json(&sc, "/api/instances/WASP-nobody/qr.svg");
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Unknown instance"))
    );
    post(&sc, &fixture("authenticated", 0));
    let (status, body) = get_json(&sc, &format!("/api/instances/{ACME}/qr.svg"));
    assert_eq!((status, body["error"].as_str()), (404, Some("No QR")));

    let page = Page1::open(&sc.url("/console/"), 1280, 900);
    let img = format!("{} img.qr", card(id));
    page.wait(
        "the server-rendered QR",
        &format!(
            "(() => {{ const i = document.querySelector({}); return !!i && i.complete && i.naturalWidth > 0 && i.src.includes('/qr.svg'); }})()",
            json!(img)
        ),
    );
    page.eval(&format!(
        "document.querySelector({}).scrollIntoView({{block: 'center'}})",
        json!(img)
    ));
    let rect = page.eval(&format!(
        "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }})()",
        json!(img)
    ));
    let f = |i: usize| rect[i].as_f64().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let png = page
        .tab
        .capture_screenshot(
            Page::CaptureScreenshotFormatOption::Png,
            None,
            Some(Page::Viewport {
                x: f(0),
                y: f(1),
                width: f(2),
                height: f(3),
                scale: 1.0,
            }),
            true,
        )
        .unwrap();
    std::fs::write(screenshot_dir().join("qr-svg.png"), &png).unwrap();
    let gray = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(gray);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the screenshot");
    let (_meta, content) = grids[0].decode().expect("decodes");
    assert_eq!(content, text);
    page.screenshot("instances-raw-qr");
    assert_clean(&page);
}

#[test]
fn actions_reach_wa_hub_with_the_injected_key_and_the_page_shows_the_answers() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    post(&sc, &fixture("qr", 0));
    let page = Page1::open(&sc.url("/console/"), 1280, 900);
    page.wait(
        "the instance",
        &format!("!!document.querySelector({})", json!(card(ACME))),
    );
    let key = format!("Bearer {API_KEY}");
    let received = |method: &str, path: &str| {
        eventually(T, || {
            up.received()
                .into_iter()
                .find(|r| r.method == method && r.path_and_query == path)
        })
        .unwrap_or_else(|| panic!("wa-hub never got {method} {path}"))
    };

    // Create: the fake wa-hub answers as the recorded one does (400, in words).
    page.type_into("#new-name", "WASP-new_shop");
    page.click("#create-form button[type=submit]");
    let create = received("POST", "/instances");
    assert_eq!(create.header_values("authorization"), vec![key.clone()]);
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    let (_, cfg) = get_json(&sc, "/api/config");
    assert_eq!(body["name"], "WASP-new_shop");
    assert_eq!(body["webhook"]["url"], cfg["webhookUrl"]);
    assert!(body["webhook"]["events"]
        .as_array()
        .unwrap()
        .contains(&json!("qr")));
    page.wait(
        "the create answer",
        "document.querySelector('#result')?.textContent.includes('Instance name is required')",
    );
    assert!(page
        .text("#result")
        .starts_with("Create WASP-new_shop: failed — 400"));
    page.screenshot("action-create-error");

    let path = format!("/instances/{ACME}");
    for (action, method, upstream_path, word) in [
        (
            "logout",
            "POST",
            format!("{path}/client/action/logout"),
            "Logout",
        ),
        ("restart", "POST", format!("{path}/restart"), "Restart"),
    ] {
        page.click(&format!("{} button[data-action={action}]", card(ACME)));
        let got = received(method, &upstream_path);
        assert_eq!(got.header_values("authorization"), vec![key.clone()]);
        page.wait(
            &format!("the {action} answer"),
            &format!(
                "document.querySelector('#result')?.textContent.startsWith({})",
                json!(format!("{word} {ACME}: done — 200"))
            ),
        );
    }

    // Delete asks first; cancelling sends nothing.
    page.click(&format!("{} button[data-action=delete]", card(ACME)));
    page.wait(
        "the confirmation",
        "document.querySelector('#confirm-dialog').open",
    );
    page.screenshot("action-delete-confirm");
    page.click("#confirm-cancel");
    page.wait(
        "the cancel note",
        "document.querySelector('#result')?.textContent.includes('cancelled')",
    );
    assert!(!up.received().iter().any(|r| r.method == "DELETE"));
    page.click(&format!("{} button[data-action=delete]", card(ACME)));
    page.wait(
        "the confirmation",
        "document.querySelector('#confirm-dialog').open",
    );
    page.click("#confirm-ok");
    let del = received("DELETE", &path);
    assert_eq!(del.header_values("authorization"), vec![key]);
    page.wait(
        "the delete answer",
        &format!(
            "document.querySelector('#result')?.textContent.startsWith({})",
            json!(format!("Delete {ACME}: done — 200"))
        ),
    );
    page.screenshot("action-delete-done");
    // Chromium notes every non-2xx answer; wa-hub's 400 to the create was asked for.
    assert_clean_but(&page, &["status of 400 (Bad Request) http://"]);
}

#[test]
fn webhook_text_is_inserted_as_text_never_as_html() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    let evil = "<script>window.__xss = 1; alert('script')</script><img src=x onerror=\"window.__xss = 2; alert('img')\">";
    let id = "WASP-<b>bold</b>";
    post(&sc, &fixture("qr", 0));
    let mut message: Value = serde_json::from_str(&fixture("message", 0)).unwrap();
    message["data"]["message"]["body"] = json!(evil);
    post(&sc, &message.to_string());
    post(
        &sc,
        &json!({"event": "auth_failure", "instanceId": id, "data": {"message": evil}}).to_string(),
    );

    let page = Page1::open(&sc.url("/console/"), 1280, 900);
    let count = "document.querySelectorAll('script').length + ':' + document.querySelectorAll('img:not(.qr)').length + ':' + document.querySelectorAll('b').length";
    page.wait(
        "the message text",
        &format!(
            "document.querySelector({})?.textContent === {}",
            json!(format!("{} .preview", card(ACME))),
            json!(evil)
        ),
    );
    page.wait(
        "the instance with markup in its id",
        &format!(
            "document.querySelector({})?.textContent === {}",
            json!(format!("{} .id", card(id))),
            json!(id)
        ),
    );
    assert_eq!(page.eval(count), json!("1:0:0"));
    page.screenshot("xss-instances");

    // The detail view shows the full JSON of the webhook, as text too.
    page.eval(&format!("location.hash = {}", json!(format!("#/i/{ACME}"))));
    page.wait(
        "the webhook entries",
        "document.querySelectorAll('#webhooks-list li').length >= 2",
    );
    page.eval("document.querySelectorAll('#webhooks-list details').forEach((d) => d.open = true)");
    page.wait(
        "the message JSON",
        &format!(
            "document.querySelector('#webhooks-list').textContent.includes({})",
            json!(evil.replace('"', "\\\""))
        ),
    );
    assert_eq!(page.eval(count), json!("1:0:0"));
    page.screenshot("xss-detail");
    // A live one as well, while the page is open.
    message["data"]["message"]["body"] = json!(format!("live {evil}"));
    post(&sc, &message.to_string());
    page.wait(
        "the live message",
        "document.querySelector('#webhooks-list').textContent.includes('live <script>')",
    );
    assert_eq!(page.eval(count), json!("1:0:0"));
    assert_eq!(page.eval("window.__xss === undefined"), json!(true));

    // Pause holds new entries without losing them.
    let entries = "document.querySelectorAll('#webhooks-list li').length";
    let before = page.eval(entries).as_u64().unwrap();
    page.click("#webhooks-pause");
    message["data"]["message"]["body"] = json!("held while paused");
    post(&sc, &message.to_string());
    page.wait(
        "the held count",
        "document.querySelector('#webhooks-pause').textContent === 'Resume (1 new)'",
    );
    assert_eq!(page.eval(entries).as_u64().unwrap(), before);
    page.click("#webhooks-pause");
    page.wait(
        "the held entry",
        "document.querySelector('#webhooks-list li summary').textContent.includes('message')",
    );
    assert_eq!(page.eval(entries).as_u64().unwrap(), before + 1);
    assert_eq!(page.text("#webhooks-pause"), "Pause");
    assert_clean(&page);
}

#[test]
fn a_token_is_asked_once_and_used_for_the_api_and_the_stream() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "auth:\n  client_tokens: [console-s3cret]\n");
    let text = "2@tokenQrText,abc=,def=";
    post(
        &sc,
        &json!({"event": "qr", "instanceId": "WASP-raw", "data": {"qr": text}}).to_string(),
    );
    // The page is open; the data is not.
    assert_eq!(
        client()
            .get(sc.url("/console/"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(get_json(&sc, "/api/sinks").0, 401);

    let page = Page1::open(&sc.url("/"), 1280, 900);
    page.wait(
        "the token dialog",
        "document.querySelector('#token-dialog').open",
    );
    page.type_into("#token-input", "wrong-token");
    page.click("#token-submit");
    page.wait(
        "the refusal",
        "document.querySelector('#token-error').textContent.includes('refused')",
    );
    assert_eq!(
        page.eval("document.querySelector('#token-dialog').open"),
        json!(true)
    );
    page.screenshot("token-refused");

    page.type_into("#token-input", "console-s3cret");
    page.click("#token-submit");
    // The QR SVG is fetched with ?access_token= (an <img> cannot send a header).
    page.wait(
        "the instance and its QR",
        &format!(
            "(() => {{ const i = document.querySelector({}); return !!i && i.complete && i.naturalWidth > 0; }})()",
            json!(format!("{} img.qr", card("WASP-raw")))
        ),
    );
    assert_eq!(
        page.eval("sessionStorage.getItem('wa-hub-console-token')"),
        json!("console-s3cret")
    );
    // The stream (EventSource with ?access_token=) brings a new instance live.
    page.wait(
        "the live stream",
        "document.querySelector('#conn').textContent === 'live'",
    );
    post(&sc, &fixture("qr", 0));
    page.wait(
        "the streamed instance",
        &format!("!!document.querySelector({})", json!(card(ACME))),
    );
    // The sinks view reads /api/sinks with the token.
    page.eval("location.hash = '#/sinks'");
    page.wait(
        "the sinks table",
        "!!document.querySelector('#sinks tr[data-sink=sse]')",
    );
    page.screenshot("token-accepted-sinks");
    // A reload keeps the token (sessionStorage): no second question.
    page.eval("window.__beforeReload = true");
    page.tab.reload(true, None).unwrap();
    page.wait(
        "the sinks after reload",
        "!window.__beforeReload && !!document.querySelector('#sinks tr[data-sink=sse]')",
    );
    assert_eq!(
        page.eval("document.querySelector('#token-dialog').open"),
        json!(false)
    );
    // A stored token that stopped working is refused in words and asked for again.
    page.eval("sessionStorage.setItem('wa-hub-console-token', 'revoked')");
    page.tab.reload(true, None).unwrap();
    page.wait(
        "the question again",
        "document.querySelector('#token-dialog').open && document.querySelector('#token-error').textContent.includes('stored token was refused')",
    );
    page.screenshot("token-revoked");
    // Chromium notes the 401s that asked for the token (no token, the wrong one).
    assert_clean_but(&page, &["status of 401 (Unauthorized)"]);
}

#[test]
fn every_view_fits_phone_and_desktop_widths_without_sideways_scrolling() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    for w in webhook_fixtures() {
        post(&sc, &w.body);
    }
    post(
        &sc,
        &json!({"event": "qr", "instanceId": "WASP-a-very-long-instance-identifier-without-any-breaks_myshopify_com", "data": {"qr": "2@someRawQrText,abc=,def="}})
            .to_string(),
    );
    post(&sc, &fixture("qr", 0));
    // One instance of each status, for the screenshots.
    for (id, events) in [
        ("WASP-coffee_corner", &["ready"][..]),
        ("WASP-bakery_shop", &["qr", "authenticated"][..]),
        (
            "WASP-florist_shop",
            &["qr", "authenticated", "ready_timeout"][..],
        ),
    ] {
        for event in events {
            let mut w: Value = serde_json::from_str(&fixture(event, 0)).unwrap();
            w["instanceId"] = json!(id);
            post(&sc, &w.to_string());
        }
    }
    // Two API calls for the detail view's second list.
    for path in ["/client/status", "/restart"] {
        let url = sc.url(&format!("/api/wahub/instances/{ACME}{path}"));
        let r = if path == "/restart" {
            client().post(url)
        } else {
            client().get(url)
        };
        r.send().unwrap();
    }
    let page = Page1::open(&sc.url("/console/"), 1280, 900);
    page.wait(
        "the instances",
        "document.querySelectorAll('article.card').length === 6",
    );
    for (view, hash, ready) in [
        (
            "instances",
            "#/",
            "document.querySelectorAll('article.card').length === 6",
        ),
        (
            "detail",
            "#/i/WASP-acme-store_myshopify_com",
            "document.querySelectorAll('#webhooks-list li').length > 5",
        ),
        (
            "sinks",
            "#/sinks",
            "!!document.querySelector('#sinks tr[data-sink=sse]')",
        ),
    ] {
        page.eval(&format!("location.hash = {}", json!(hash)));
        page.wait(view, ready);
        for (width, height) in [(1280, 900), (390, 844)] {
            page.resize(width, height);
            page.eval("window.scrollTo(0, 0)");
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !page.has_horizontal_scroll(),
                "{view} scrolls sideways at {width} px"
            );
            page.screenshot(&format!("{view}-{width}"));
        }
        page.resize(1280, 900);
    }
    // The dark colour scheme, for a person to look at.
    page.tab
        .call_method(Emulation::SetEmulatedMedia {
            media: None,
            features: Some(vec![Emulation::MediaFeature {
                name: "prefers-color-scheme".into(),
                value: "dark".into(),
            }]),
        })
        .unwrap();
    page.eval("location.hash = '#/'");
    page.wait(
        "the instances",
        "document.querySelectorAll('article.card').length === 6",
    );
    assert_eq!(
        page.eval("matchMedia('(prefers-color-scheme: dark)').matches"),
        json!(true)
    );
    page.screenshot("instances-dark");
    page.eval("(() => { const f = document.querySelector('#filter'); f.value = 'shop'; f.dispatchEvent(new Event('input')); })()");
    assert_eq!(
        page.eval("[...document.querySelectorAll('article.card')].filter((c) => !c.hidden).length"),
        json!(5),
        "the id filter"
    );
    page.eval("(() => { const f = document.querySelector('#filter'); f.value = ''; f.dispatchEvent(new Event('input')); })()");
    page.eval("(() => { const f = document.querySelector('#status-filter'); f.value = '2'; f.dispatchEvent(new Event('change')); })()");
    assert_eq!(
        page.eval("[...document.querySelectorAll('article.card')].filter((c) => !c.hidden).map((c) => c.dataset.id)"),
        json!(["WASP-bakery_shop", "WASP-florist_shop"]),
        "the status filter"
    );
    page.eval("(() => { const f = document.querySelector('#status-filter'); f.value = ''; f.dispatchEvent(new Event('change')); })()");
    // Keyboard focus is visible: the focused button gets an outline.
    page.eval("document.querySelector('button[data-action=restart]').focus({focusVisible: true})");
    page.tab.press_key("Tab").unwrap();
    let outline = page.eval("getComputedStyle(document.activeElement).outlineStyle");
    assert_eq!(outline, json!("solid"), "focus outline");
    assert_clean(&page);
}

#[test]
fn the_sinks_view_shows_health_and_replays_dead_letters() {
    let _one = serial();
    let up = FakeUpstream::start();
    let outbox = tempfile::tempdir().unwrap();
    // The forward target is the fake wa-hub without its key: 401, a dead letter at once.
    let sc = sidecar(
        &up,
        &format!(
            "sinks:\n  - type: sse\n  - type: stdout\n  - type: forward\n    name: crm\n    url: {}/hook\n    outbox_path: {}\n",
            up.base_url(),
            outbox.path().join("crm.redb").display()
        ),
    );
    let (status, sinks) = get_json(&sc, "/api/sinks");
    assert_eq!(status, 200);
    assert_eq!(
        sinks["sinks"][0],
        json!({"name":"sse","type":"sse","connected":null,"queueDepth":0,"queueCapacity":10000,
               "delivered":0,"failed":0,"dropped":0,"restarts":0,"retries":0,"deadLetters":0,"pending":0})
    );
    assert_eq!(sinks["sinks"][2]["type"], "forward");
    post(&sc, &fixture("qr", 0));
    post(&sc, &fixture("ready", 0));
    let hook_posts = || {
        up.received()
            .iter()
            .filter(|r| r.path_and_query == "/hook")
            .count()
    };
    eventually(T, || {
        (get_json(&sc, "/api/sinks").1["sinks"][2]["deadLetters"] == json!(2)).then_some(())
    })
    .expect("two dead letters");
    assert_eq!(hook_posts(), 2);

    let page = Page1::open(&sc.url("/console/#/sinks"), 1280, 900);
    page.wait(
        "the forward sink's row",
        "document.querySelector('#sinks tr[data-sink=crm]')?.textContent.includes('forward')",
    );
    page.wait(
        "two dead letters",
        "document.querySelectorAll('#dead-letters li').length === 2",
    );
    assert!(
        page.text("#dead-letters").contains("HTTP 401"),
        "{}",
        page.text("#dead-letters")
    );
    page.screenshot("sinks-dead-letters");
    // Replay one: it is sent again (and fails again: a dead letter once more).
    page.click("#dead-letters li button");
    page.wait(
        "the replay answer",
        "document.querySelector('#result')?.textContent.startsWith('Replayed dead letter')",
    );
    eventually(T, || (hook_posts() == 3).then_some(())).expect("replayed one");
    page.click("#dead-letters button[aria-label^='Replay all']");
    page.wait(
        "the replay-all answer",
        "document.querySelector('#result')?.textContent.startsWith('Replayed all dead letters of crm: 2 re-queued')",
    );
    eventually(T, || (hook_posts() == 5).then_some(())).expect("replayed all");
    page.resize(390, 844);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !page.has_horizontal_scroll(),
        "sinks scroll sideways at 390 px"
    );
    page.screenshot("sinks-dead-letters-390");
    assert_clean(&page);
}

#[test]
fn the_page_says_reconnecting_resumes_and_reloads_after_a_reset() {
    let _one = serial();
    let up = FakeUpstream::start();
    // A short SSE history, so that a longer outage outruns it (the stream then sends `reset`).
    let sc = sidecar(
        &up,
        "sinks:\n  - type: sse\n    retry_ms: 300\n    history: 6\n",
    );
    post(&sc, &fixture("qr", 0));
    // The browser reaches the sidecar through a relay the test can cut.
    let relay = Relay::start(sc.addr);
    let page = Page1::open(&format!("http://{}/console/", relay.addr), 1280, 900);
    let badge = |id: &str, word: &str| {
        format!(
            "document.querySelector({})?.textContent === {}",
            json!(format!("{} .badge", card(id))),
            json!(word)
        )
    };
    page.wait("the instance", &badge(ACME, "needs QR"));
    page.wait(
        "live",
        "document.querySelector('#conn').textContent === 'live'",
    );
    page.eval("window.__sameDocument = 7");

    // A short outage: the page says so, then resumes with Last-Event-ID and gets what it missed.
    relay.set_down(true);
    relay.cut();
    page.wait(
        "reconnecting",
        "document.querySelector('#conn').textContent === 'reconnecting…'",
    );
    page.screenshot("reconnecting");
    post(&sc, &fixture("authenticated", 0));
    relay.set_down(false);
    page.wait("the missed status", &badge(ACME, "syncing"));
    page.wait(
        "live again",
        "document.querySelector('#conn').textContent === 'live'",
    );
    assert!(
        relay
            .heads()
            .iter()
            .any(|h| h.starts_with("GET /api/stream")
                && h.to_ascii_lowercase().contains("last-event-id: ")),
        "the browser resumed with Last-Event-ID"
    );

    // A long outage: more events than the stream keeps. The stream answers with `reset`, and
    // only reloading /api/instances can tell the page that the instance became active.
    relay.set_down(true);
    relay.cut();
    page.wait(
        "reconnecting",
        "document.querySelector('#conn').textContent === 'reconnecting…'",
    );
    post(&sc, &fixture("ready", 0));
    let mut message: Value = serde_json::from_str(&fixture("message", 0)).unwrap();
    for i in 0..8 {
        message["data"]["message"]["body"] = json!(format!("filler {i}"));
        post(&sc, &message.to_string());
    }
    relay.set_down(false);
    page.wait("the reloaded status", &badge(ACME, "active"));
    page.wait(
        "live again",
        "document.querySelector('#conn').textContent === 'live'",
    );
    assert_eq!(
        page.eval("window.__sameDocument"),
        json!(7),
        "no page reload"
    );
    // Chromium notes the cut connections; the page itself logged nothing.
    assert_clean_but(&page, &["net::ERR_"]);
}

#[test]
fn wa_hub_down_is_said_instead_of_an_empty_list() {
    let _one = serial();
    // Nothing listens at the upstream address.
    let sc = Sidecar::start(
        &dead_upstream_url(),
        &format!("{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\n"),
    );
    let page = Page1::open(&sc.url("/console/"), 1280, 900);
    page.wait(
        "the banner",
        "document.querySelector('#banner').hidden === false && document.querySelector('#banner').textContent.includes('wa-hub is down')",
    );
    page.wait(
        "the empty-list note",
        "document.querySelector('#empty')?.textContent.startsWith('wa-hub is down')",
    );
    page.screenshot("wa-hub-down");
    // /readyz answers 503 while wa-hub is down: Chromium notes it.
    assert_clean_but(&page, &["status of 503 (Service Unavailable) http://"]);
}

/// The console's HTTP answers: redirect, cache headers, ETag/304, CSP, HEAD, 405, and
/// `console.enabled: false`.
#[test]
fn console_files_are_served_with_cache_headers_and_csp() {
    // Serial too: sidecars started at the same time can race for the same free port.
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    let c = client();
    let page = c.get(sc.url("/console/")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'; img-src 'self' data:"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    let html = page.text().unwrap();
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("script src")
        .to_owned();
    assert!(
        script.starts_with("v/") && script.ends_with("/app.js"),
        "{script}"
    );

    let js = c.get(sc.url(&format!("/console/{script}"))).send().unwrap();
    assert_eq!(js.status().as_u16(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = js.headers()["etag"].to_str().unwrap().to_owned();
    let again = c
        .get(sc.url("/console/app.js"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    assert!(again.bytes().unwrap().is_empty());

    let head = c.head(sc.url("/console/style.css")).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(
        head.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 100
    );
    assert!(head.bytes().unwrap().is_empty());
    assert_eq!(
        c.post(sc.url("/console/"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        405
    );
    assert_eq!(
        c.get(sc.url("/console/nope.js"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let r = c.get(sc.url("/console")).send().unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (302, "/console/")
    );

    // Page weight without a QR: every file the page loads.
    let mut total = html.len();
    for f in [
        "app.js",
        "api.js",
        "dom.js",
        "state.js",
        "instances.js",
        "detail.js",
        "sinks.js",
        "actions.js",
        "style.css",
    ] {
        let r = c.get(sc.url(&format!("/console/{f}"))).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{f}");
        total += r.bytes().unwrap().len();
    }
    eprintln!("console page weight: {total} bytes");
    assert!(total < 100 * 1024, "page weight {total} bytes");

    let off = sidecar(&up, "console:\n  enabled: false\n");
    assert_eq!(c.get(off.url("/")).send().unwrap().status().as_u16(), 404);
    assert_eq!(
        c.get(off.url("/console/"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

/// Not a pass/fail test: measures the first render with 1 000 instances (900 active, 100
/// showing a PNG QR) in headless Chromium and prints the figures. Run with
/// `cargo test --test console -- --ignored --nocapture first_render`.
#[test]
#[ignore = "a measurement, not a check; run by hand"]
fn first_render_with_1000_instances() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    let mut qr: Value = serde_json::from_str(&fixture("qr", 0)).unwrap();
    let mut ready: Value = serde_json::from_str(&fixture("ready", 0)).unwrap();
    for i in 0..1000 {
        let id = format!("WASP-shop-{i:04}_myshopify_com");
        let body = if i % 10 == 0 {
            qr["instanceId"] = json!(id);
            qr.to_string()
        } else {
            ready["instanceId"] = json!(id);
            ready.to_string()
        };
        post(&sc, &body);
    }
    assert_eq!(
        get_json(&sc, "/api/instances").1["instances"]
            .as_array()
            .unwrap()
            .len(),
        1000
    );
    for round in 0..3 {
        let page = Page1::open(&sc.url("/console/"), 1280, 900);
        page.wait(
            "the painted list",
            "performance.getEntriesByName('instances-painted').length > 0",
        );
        let t = page.eval(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; \
             const m = (x) => performance.getEntriesByName(x)[0].startTime; \
             return { domContentLoaded: n.domContentLoadedEventEnd, rendered: m('instances-rendered'), \
                      painted: m('instances-painted'), cards: document.querySelectorAll('article.card').length, \
                      nodes: document.getElementsByTagName('*').length }; })()",
        );
        eprintln!("first render, 1000 instances, round {round}: {t}");
        assert_eq!(t["cards"], json!(1000));
    }
}

/// The detectors the other tests rely on work: a dialog, a `console.error` and an uncaught
/// exception on the console page are all seen (so "no alert, no error" can fail).
#[test]
fn the_harness_sees_dialogs_console_errors_and_exceptions() {
    let _one = serial();
    let up = FakeUpstream::start();
    let sc = sidecar(&up, "");
    let page = Page1::open(&sc.url("/console/"), 1280, 900);
    page.wait("the page", "!!document.querySelector('#instances')");
    page.eval("setTimeout(() => alert('seen'), 0)");
    eventually(T, || (!page.dialogs().is_empty()).then_some(())).expect("the alert is seen");
    page.tab.get_dialog().accept(None).unwrap();
    assert_eq!(page.dialogs(), vec!["seen".to_owned()]);
    page.eval("console.error('an error')");
    page.eval("setTimeout(() => { throw new Error('uncaught'); }, 0)");
    eventually(T, || (page.errors().len() >= 2).then_some(())).expect("errors are seen");
    let errors = page.errors().join("\n");
    assert!(
        errors.contains("an error") && errors.contains("uncaught"),
        "{errors}"
    );
}

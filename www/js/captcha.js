// The captcha slot: when the link (or a run of wrong passwords) calls for a captcha, show a
// Turnstile widget with the site key the server gave, and hand its token to the next upload
// (X-Captcha-Token). The server checks it with its siteverify endpoint; a token is good once.
// hCaptcha works the same way with its own script URL and `hcaptcha` global.

const SCRIPT = 'https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit';

let loading = null;
function loadWidgetScript() {
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = SCRIPT;
    script.async = true;
    script.onload = () => (window.turnstile ? resolve(window.turnstile) : reject(new Error('no widget')));
    script.onerror = () => { loading = null; reject(new Error('the captcha could not be loaded')); };
    document.head.append(script);
  });
  return loading;
}

export class CaptchaSlot {
  /**
   * @param {{box: HTMLElement, slot: HTMLElement, message: HTMLElement}} el
   * @param {() => void} onSolved called when a token is ready (to send again what was refused)
   */
  constructor(el, onSolved) {
    this.el = el;
    this.onSolved = onSolved;
    this.token = '';
    this.widget = null;
    this.siteKey = null;
  }

  /** For a newly opened link: show the widget before the first upload when the server asks. */
  prepare(info) {
    this.hide();
    if (info?.captcha_required) this.show(info, 'This link asks you to solve a captcha before uploading.');
  }

  /** Shows the widget with `message` (after a `captcha-required` or `captcha-invalid` answer). */
  async show(info, message) {
    this.el.box.hidden = false;
    this.el.message.textContent = message;
    this.token = '';
    if (!info?.captcha_enabled || !info.captcha_site_key) {
      this.el.message.textContent = `${message} This server has no captcha widget configured; ask whoever sent the link.`;
      return;
    }
    try {
      const turnstile = await loadWidgetScript();
      if (this.widget !== null && this.siteKey === info.captcha_site_key) {
        turnstile.reset(this.widget);
        return;
      }
      this.el.slot.replaceChildren();
      this.siteKey = info.captcha_site_key;
      this.widget = turnstile.render(this.el.slot, {
        sitekey: info.captcha_site_key,
        callback: (token) => {
          this.token = token;
          this.el.message.textContent = 'Thank you. Uploads go on.';
          this.onSolved();
        },
        'expired-callback': () => { this.token = ''; },
      });
    } catch (error) {
      this.el.message.textContent = `${message} The captcha could not be loaded (${error.message}); check your connection and reload.`;
    }
  }

  hide() {
    this.el.box.hidden = true;
    this.token = '';
  }

  /** The token for the next upload, once: the server accepts each token only once. */
  take() {
    const token = this.token;
    this.token = '';
    return token;
  }
}

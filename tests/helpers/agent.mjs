// A scripted "browser without JavaScript": keeps cookies, follows redirects within the
// server, and submits the HTML forms the server renders (hidden fields included), the way a
// user's browser would. It stops at the first redirect that leaves the server (the client's
// redirect URI) and returns it.
import { parse } from "node-html-parser";

export class Agent {
  constructor(base) {
    this.base = base;
    this.cookies = new Map();
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  remember(res) {
    for (const line of res.headers.getSetCookie?.() ?? []) {
      const [pair, ...attrs] = line.split(";");
      const [name, ...rest] = pair.split("=");
      const maxAge = attrs.map((a) => a.trim().toLowerCase()).find((a) => a.startsWith("max-age="));
      if (maxAge && Number(maxAge.slice(8)) <= 0) this.cookies.delete(name.trim());
      else this.cookies.set(name.trim(), rest.join("="));
    }
  }

  /** One request, no redirect following. */
  async raw(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    if (this.cookies.size) headers.Cookie = this.cookieHeader();
    const res = await fetch(new URL(url, this.base), { ...init, headers, redirect: "manual" });
    this.remember(res);
    return res;
  }

  /**
   * Follows redirects while they stay on the server. Returns
   * { res, url, html, doc } for a page, or { redirect: URL, res } when leaving the server.
   */
  async go(url, init = {}) {
    let res = await this.raw(url, init);
    let current = new URL(url, this.base);
    for (let hops = 0; hops < 20 && [301, 302, 303, 307, 308].includes(res.status); hops++) {
      const next = new URL(res.headers.get("location"), current);
      if (next.origin !== new URL(this.base).origin || !next.pathname.startsWith("/auth/")) return { redirect: next, res };
      current = next;
      res = await this.raw(next);
    }
    const html = await res.text();
    return { res, url: current, html, doc: parse(html) };
  }

  /**
   * Submits the form containing `selector` (a submit button, or the form itself), with
   * `fill` overriding fields. Unticked checkboxes are left out, as a browser does; pass
   * `uncheck` to untick some.
   */
  async submit(page, selector, { fill = {}, uncheck = [] } = {}) {
    const target = page.doc.querySelector(selector);
    if (!target) throw new Error(`no ${selector} on ${page.url}:\n${page.html.slice(0, 500)}`);
    let form = target;
    while (form && form.tagName !== "FORM") form = form.parentNode;
    if (!form) throw new Error(`${selector} is not in a form`);
    const body = new URLSearchParams();
    for (const input of form.querySelectorAll("input")) {
      const name = input.getAttribute("name");
      if (!name) continue;
      const type = (input.getAttribute("type") ?? "text").toLowerCase();
      if (type === "checkbox" && (input.getAttribute("checked") === undefined || uncheck.includes(input.getAttribute("value")))) continue;
      if (name in fill) continue;
      body.append(name, input.getAttribute("value") ?? "");
    }
    for (const [name, value] of Object.entries(fill)) body.append(name, value);
    if (target.tagName === "BUTTON" && target.getAttribute("name")) body.append(target.getAttribute("name"), target.getAttribute("value") ?? "");
    return this.go(new URL(form.getAttribute("action"), page.url), {
      method: (form.getAttribute("method") ?? "get").toUpperCase(),
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString(),
    });
  }
}

/** A PKCE pair (RFC 7636 S256), computed with Node's own crypto. */
export async function pkce() {
  const { randomBytes, createHash } = await import("node:crypto");
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

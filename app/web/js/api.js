// The HTTP client: bearer token from the session, JSON in and out, errors as ApiError with the API's detail.

const SESSION_KEY = "trdbot.session";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? plainMessage(detail) : describeFailure(status, detail));
    this.status = status;
    this.detail = detail;
  }

  /** 422 details as {field: message} in plain words; errors that name no known field go under "_form". */
  fieldErrors(knownFields) {
    const errors = {};
    const items = Array.isArray(this.detail) ? this.detail : [{ loc: [], msg: this.message }];
    for (const item of items) {
      // a list item's error ends its loc with the index: ["body", "symbols", 3]
      const field = [...(item.loc || [])].reverse().find((part) => knownFields.includes(part));
      const key = field ?? "_form";
      const message = plainMessage(item.msg);
      errors[key] = errors[key] ? `${errors[key]}; ${message}` : message;
    }
    return errors;
  }
}

/** A 422's list of problems as one sentence; other answers without a message by their status. */
function describeFailure(status, detail) {
  if (Array.isArray(detail) && detail.length) return detail.map((item) => plainMessage(item.msg)).join("; ");
  if (status === 404) return "Not found.";
  if (status >= 500) return `The server could not answer (${status}): try again in a moment.`;
  return `The request failed (${status}).`;
}

/** Pydantic prefixes a validator's own message with "Value error, "; the reader needs only the message. */
function plainMessage(msg) {
  return String(msg ?? "").replace(/^(Value|Assertion) error, /i, "");
}

export const session = {
  load() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY));
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

export class Api {
  constructor(onUnauthorized) {
    this.onUnauthorized = onUnauthorized;
  }

  get token() {
    return session.load()?.token;
  }

  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (response.status === 401 && this.token) this.onUnauthorized();
    if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
    return data;
  }

  get(path, query = {}) {
    const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v != null));
    return this.request("GET", params.size ? `${path}?${params}` : path);
  }

  /** GET that answers null when the route is not there (404): views built ahead of their API say so. */
  async optional(path, query = {}) {
    try {
      return await this.get(path, query);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && e.message === "Not Found") return null;
      throw e;
    }
  }

  /** Fetches a file with the bearer token and hands it to the browser as a download named `filename`. */
  async download(path, filename) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) throw new ApiError(response.status, response.statusText);
    const url = URL.createObjectURL(await response.blob());
    const link = Object.assign(document.createElement("a"), { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  delete(path) {
    return this.request("DELETE", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  put(path, body) {
    return this.request("PUT", path, body);
  }
}

// A real OpenID provider for the single sign-on tests: oidc-provider (an OpenID-certified
// implementation) with its clients and users read from a JSON file, on a loopback port.
//
//   node provider.js PORT SETUP.json
//
// SETUP.json: {"clients": [...oidc-provider client metadata...],
//              "users": {"alice": {"email": ..., "name": ..., "groups": [...]}},
//              "id_token_ttl": 3600}
// Signing in: /interaction/UID shows a form with one field, the user's id (no password: these
// are test users); the tests post it like a browser would. Consent is given with the sign-in.
// "listening" is printed on stdout once the port is open.

import http from "node:http";
import { readFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, setupFile] = process.argv.slice(2);
const setup = JSON.parse(readFileSync(setupFile, "utf8"));
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "test-rs256", use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: setup.clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: ["test-provider-cookie-key-0123456789"] },
  scopes: ["openid", "email", "profile", "groups"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
  conformIdTokenClaims: false, // the scopes' claims go into the ID token, as enterprise providers do
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  ttl: { IdToken: setup.id_token_ttl || 3600, Interaction: 600, Session: 3600, Grant: 3600 },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = setup.users[id];
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, email_verified: true, ...user }) };
  },
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 4096) throw new Error("form too large");
  }
  return new URLSearchParams(body);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === "GET") {
    res.setHeader("Content-Type", "text/html; charset=utf-8");
    res.end(
      `<!doctype html><title>Test provider sign-in</title><h1>Sign in</h1>` +
        `<form method="post" action="/interaction/${escape(details.uid)}/login">` +
        `<label>User <input name="login" autofocus></label> <button type="submit">Sign in</button></form>`,
    );
    return;
  }
  const form = await readForm(req);
  const accountId = form.get("login");
  if (!setup.users[accountId]) {
    res.statusCode = 400;
    res.end("no such test user");
    return;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
http
  .createServer((req, res) => {
    if (req.url.startsWith("/interaction/")) {
      interaction(req, res).catch((err) => {
        res.statusCode = 400;
        res.end(String(err && err.message));
      });
      return;
    }
    callback(req, res);
  })
  .listen(Number(port), "127.0.0.1", () => console.log("listening"));

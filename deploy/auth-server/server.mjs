// A local SMART on FHIR authorization server for development and tests (never for patient data).
//
// The OAuth 2.0 / OpenID Connect server is panva's oidc-provider (npm, OpenID certified); this file
// only configures it for SMART App Launch 2.0 and plays the EHR's part that an OAuth server lacks:
//
//   - `aud` (required) must name a FHIR server this EHR fronts (AUTH_FHIR_BASES); it becomes the
//     RFC 8707 resource indicator, so the access token is issued for that FHIR server;
//   - `launch` (EHR launch) must be a launch id minted by the EHR: POST /ehr/launch with the admin
//     token and {"patient": "<id>"} answers {"launch": "<opaque id>"} (valid AUTH_LAUNCH_TTL_S);
//   - the token response carries the launch context (`patient`, `need_patient_banner`) beside the
//     access token (SMART 2.0 "Launch context arrives with your access_token"), added by a post-
//     middleware, as oidc-provider's documentation suggests for extra token response members;
//   - the id_token carries `fhirUser` (scope fhirUser), an absolute URL of the user's Practitioner;
//   - PKCE is required for every client, S256 only (oidc-provider supports no other method);
//   - standalone launch with `launch/patient`: the sign-in page asks for the patient id;
//   - GET /.well-known/smart-configuration publishes the SMART metadata for the FHIR servers in
//     AUTH_FHIR_BASES (the local HAPI server does not serve one itself).
//
// Settings (environment): AUTH_PORT (8095), AUTH_ISSUER (http://127.0.0.1:PORT), AUTH_FHIR_BASES
// (comma-separated, default http://127.0.0.1:8080/fhir), AUTH_CLIENTS_FILE (JSON list of client
// metadata, default clients.json here), AUTH_USERS_FILE (users.json here), AUTH_ADMIN_TOKEN (required:
// the EHR's secret for POST /ehr/launch), AUTH_LAUNCH_TTL_S (600). Keys are made at start-up: tokens
// do not survive a restart, which is what a test server wants.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, exportJWK } from 'jose';
import Provider, { errors } from 'oidc-provider';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const port = Number(env.AUTH_PORT || 8095);
const issuer = (env.AUTH_ISSUER || `http://127.0.0.1:${port}`).replace(/\/$/, '');
const fhirBases = (env.AUTH_FHIR_BASES || 'http://127.0.0.1:8080/fhir')
  .split(',').map((s) => s.trim().replace(/\/$/, '')).filter(Boolean);
const adminToken = env.AUTH_ADMIN_TOKEN || '';
const launchTtlMs = Number(env.AUTH_LAUNCH_TTL_S || 600) * 1000;
const clients = JSON.parse(readFileSync(env.AUTH_CLIENTS_FILE || join(here, 'clients.json'), 'utf8'));
const users = JSON.parse(readFileSync(env.AUTH_USERS_FILE || join(here, 'users.json'), 'utf8'));
if (adminToken.length < 16) {
  console.error('auth-server: AUTH_ADMIN_TOKEN (16 characters or more) is required');
  process.exit(2);
}

// SMART scopes: OpenID ones are the provider's; the FHIR ones are granted on the resource (aud).
const OIDC_SCOPES = ['openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'offline_access'];
const FHIR_TYPES = ['*', 'Patient', 'Practitioner', 'Encounter', 'Observation', 'Condition', 'MedicationRequest',
  'MedicationStatement', 'Medication', 'Flag', 'RiskAssessment', 'Provenance', 'ServiceRequest', 'Task',
  'DiagnosticReport', 'AllergyIntolerance', 'Procedure', 'Group'];
// Every SMART v1 (read, write, *) and v2 (ordered subsets of c r u d s) scope on those types; the
// resource server grants only scopes it lists, so they are listed.
const PERMISSIONS = ['read', 'write', '*', ...Array.from({ length: 31 }, (_, n) => [...'cruds'].filter((_, i) => (n + 1) & (1 << (4 - i))).join(''))];
const FHIR_SCOPES = new Set(['patient', 'user'].flatMap((c) => FHIR_TYPES.flatMap((t) => PERMISSIONS.map((p) => `${c}/${t}.${p}`))));

const launches = new Map(); // launch id -> {patient, expires}
const contexts = new Map(); // grant id -> {patient}

function launchContext(id) {
  const entry = launches.get(id);
  if (!entry || entry.expires < Date.now()) return undefined;
  return entry;
}

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: OIDC_SCOPES,
  claims: { openid: ['sub'], fhirUser: ['fhirUser'], profile: ['name'] },
  extraParams: {
    aud(ctx, value) {
      if (!value) throw new errors.InvalidRequest('aud is required (SMART App Launch: the FHIR server)');
      if (!fhirBases.includes(value.replace(/\/$/, ''))) throw new errors.InvalidTarget('aud is not a FHIR server of this EHR');
    },
    launch(ctx, value) {
      if (value !== undefined && !launchContext(value)) throw new errors.InvalidRequest('launch is unknown or expired');
    },
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // SMART's aud is the resource indicator: the access token is for that FHIR server.
      defaultResource: (ctx) => ctx.oidc.params.aud?.replace(/\/$/, ''),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (!fhirBases.includes(resource)) throw new errors.InvalidTarget();
        return { scope: [...FHIR_SCOPES].join(' '), accessTokenFormat: 'opaque', accessTokenTTL: 3600 };
      },
    },
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
  async findAccount(ctx, sub) {
    const user = users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      claims: async () => ({ sub, name: user.name, fhirUser: `${fhirBases[0]}/${user.fhirUser}` }),
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<p>${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
  },
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
function page(title, body) {
  return `<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;
}
async function readBody(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > 65536) throw new errors.InvalidRequest('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
async function readForm(ctx) {
  return new URLSearchParams(await readBody(ctx));
}
function sameSecret(given) {
  const a = Buffer.from(given || ''), b = Buffer.from(`Bearer ${adminToken}`);
  return a.length === b.length && timingSafeEqual(a, b);
}
function smartConfiguration() {
  return {
    issuer,
    jwks_uri: `${issuer}/jwks`,
    authorization_endpoint: `${issuer}/auth`,
    token_endpoint: `${issuer}/token`,
    grant_types_supported: ['authorization_code'],
    token_endpoint_auth_methods_supported: ['none', 'client_secret_basic'],
    scopes_supported: [...OIDC_SCOPES, 'patient/*.rs', 'user/*.rs', 'patient/*.cruds', 'user/*.cruds'],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    capabilities: [
      'launch-ehr', 'launch-standalone', 'client-public', 'client-confidential-symmetric',
      'context-ehr-patient', 'context-standalone-patient', 'sso-openid-connect',
      'permission-patient', 'permission-user', 'permission-v1', 'permission-v2',
    ],
  };
}

async function interaction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { uid, params } = details;
  const scopes = String(params.scope || '').split(' ').filter(Boolean);
  const launch = params.launch ? launchContext(params.launch) : undefined;
  const askPatient = !launch && scopes.includes('launch/patient');
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = page('Sign in to the local EHR', `<form method="post" action="/interaction/${escape(uid)}">`
      + `<p>Application <strong>${escape(params.client_id)}</strong> asks for: ${escape(scopes.join(' '))}</p>`
      + '<p><label for="username">User name</label> <input id="username" name="username" autocomplete="username" required></p>'
      + '<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>'
      + (askPatient ? '<p><label for="patient">Patient id</label> <input id="patient" name="patient" required></p>' : '')
      + '<p><button type="submit">Sign in and allow</button></p></form>');
    return;
  }
  const form = await readForm(ctx);
  const user = users[form.get('username')];
  if (!user || user.password !== form.get('password')) {
    ctx.status = 401;
    ctx.type = 'html';
    ctx.body = page('Sign-in failed', `<p>Unknown user or wrong password. <a href="/interaction/${escape(uid)}">Try again</a></p>`);
    return;
  }
  const patient = launch ? launch.patient : (askPatient ? String(form.get('patient') || '').trim() : undefined);
  const grant = new provider.Grant({ accountId: form.get('username'), clientId: params.client_id });
  grant.addOIDCScope(scopes.filter((s) => OIDC_SCOPES.includes(s)).join(' '));
  const fhirScopes = scopes.filter((s) => FHIR_SCOPES.has(s));
  const resource = String(params.aud || '').replace(/\/$/, '');
  if (fhirScopes.length) grant.addResourceScope(resource, fhirScopes.join(' '));
  const grantId = await grant.save();
  if (patient) contexts.set(grantId, { patient });
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
    login: { accountId: form.get('username') },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/smart-configuration' && ctx.method === 'GET') {
    ctx.body = smartConfiguration();
    return;
  }
  if (ctx.path === '/ehr/launch' && ctx.method === 'POST') {
    if (!sameSecret(ctx.get('authorization'))) { ctx.status = 401; return; }
    let body;
    try { body = JSON.parse(await readBody(ctx)); } catch { body = undefined; }
    if (!body || typeof body.patient !== 'string' || !/^[A-Za-z0-9\-.]{1,64}$/.test(body.patient)) {
      ctx.status = 400; ctx.body = { error: 'patient (a FHIR id) is required' }; return;
    }
    const launch = randomBytes(16).toString('base64url');
    launches.set(launch, { patient: body.patient, expires: Date.now() + launchTtlMs });
    ctx.status = 201; ctx.body = { launch };
    return;
  }
  if (ctx.path.startsWith('/interaction/')) {
    await interaction(ctx);
    return;
  }
  await next();
  // Launch context beside the access token (SMART App Launch 2.0, scopes-and-launch-context).
  if (ctx.oidc?.route === 'token' && ctx.status === 200 && ctx.body?.access_token) {
    const code = ctx.oidc.entities.AuthorizationCode ?? ctx.oidc.entities.RefreshToken;
    const context = code && contexts.get(code.grantId);
    if (context) Object.assign(ctx.body, { patient: context.patient, need_patient_banner: true });
    // The granted scope in full: the OpenID/launch scopes beside the FHIR ones of the resource.
    const oidcScopes = String(code?.scope || '').split(' ').filter((s) => OIDC_SCOPES.includes(s));
    const scope = new Set([...oidcScopes, ...String(ctx.body.scope || '').split(' ').filter(Boolean)]);
    ctx.body.scope = [...scope].join(' ');
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`auth-server: listening on ${issuer} for FHIR servers ${fhirBases.join(', ')}`);
});

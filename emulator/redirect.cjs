// Make unchanged Node.js code written for Google's Cloud Tasks talk to the emulator.
//
//   NODE_OPTIONS="--require /path/to/emulator/redirect.cjs" \
//   CLOUD_TASKS_EMULATOR_REDIRECT=127.0.0.1:8123 node app.js
//
// The Node counterpart of emulator/redirect.py: it changes only where clients
// connect. CLOUD_TASKS_EMULATOR_REDIRECT (else CLOUD_TASKS_EMULATOR_HOST) is
// HOST:PORT of an emulator started with --one-port. Every google-gax GrpcClient
// (what @google-cloud/tasks' v2, v2beta2 and v2beta3 clients connect through)
// asked for a stub at cloudtasks.googleapis.com gets a plaintext channel to that
// address instead, without looking for credentials; the REST fallback
// (`fallback: true`) speaks plain HTTP to it. NODE_OPTIONS reaches child
// processes too, so samples a test suite runs with `node sample.js` follow.
'use strict';

const Module = require('module');

const GOOGLE_HOST = 'cloudtasks.googleapis.com';
const address = process.env.CLOUD_TASKS_EMULATOR_REDIRECT || process.env.CLOUD_TASKS_EMULATOR_HOST;

function parseAddress(value) {
  const match = /^(\[[^\]]+\]|[^:/\s]+):(\d+)$/.exec(value);
  if (!match) {
    throw new Error(
      `CLOUD_TASKS_EMULATOR_REDIRECT / CLOUD_TASKS_EMULATOR_HOST must be HOST:PORT of an ` +
        `emulator started with --one-port (e.g. 127.0.0.1:8123), not ${JSON.stringify(value)}`);
  }
  return {host: match[1].replace(/^\[|\]$/g, ''), port: Number(match[2])};
}

function isGoogle(options) {
  return !options || !options.servicePath || options.servicePath === GOOGLE_HOST;
}

function patchGrpcClient(GrpcClient, extra) {
  if (!GrpcClient || !GrpcClient.prototype || GrpcClient.prototype.__emulatorRedirect) return;
  const createStub = GrpcClient.prototype.createStub;
  GrpcClient.prototype.createStub = function (service, options, ...rest) {
    if (isGoogle(options)) {
      options = {...options, servicePath: target.host, port: target.port, ...extra(this)};
    }
    return createStub.call(this, service, options, ...rest);
  };
  GrpcClient.prototype.__emulatorRedirect = true;
}

function patchGax(gax) {
  // gRPC: an insecure channel from gax's own grpc-js instance (this.grpc).
  patchGrpcClient(gax.GrpcClient, client => ({sslCreds: client.grpc.credentials.createInsecure()}));
  // REST fallback: plain HTTP.
  if (gax.fallback) patchGrpcClient(gax.fallback.GrpcClient, () => ({protocol: 'http'}));
}

if (!address) {
  // Fail closed: without an address the clients would reach Google with real credentials.
  throw new Error(
    'emulator/redirect.cjs: neither CLOUD_TASKS_EMULATOR_REDIRECT nor CLOUD_TASKS_EMULATOR_HOST ' +
      'is set: set one to the HOST:PORT of an emulator started with --one-port (e.g. 127.0.0.1:8123)');
}
const target = parseAddress(address);

if (target) {
  const load = Module._load;
  Module._load = function (request, ...rest) {
    const exported = load.call(this, request, ...rest);
    if (request === 'google-gax' || /[\\/]google-gax[\\/]build[\\/]src[\\/]index\.js$/.test(request)) {
      patchGax(exported);
    }
    return exported;
  };
}

module.exports = {target, parseAddress};

// A DPoP-capable authorization server for the integration tests: oidc-provider with the
// client credentials grant, DPoP with nonces required, and JWT access tokens for one API.
// Listens on 127.0.0.1 (a free port) and prints {"issuer": ..., "port": ...} on one line.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const [clientId, clientSecret, audience] = process.argv.slice(2);

function jwk(type, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: alg };
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: {
      keys: [
        jwk('ec', { namedCurve: 'P-256' }, 'ES256'),
        jwk('rsa', { modulusLength: 2048 }, 'RS256'),
      ],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'read',
          audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 3600,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));

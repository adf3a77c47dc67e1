import { type AmpsUri, CertificateError, ConnectionError } from '@amps-ts/core-protocol';

// OpenSSL verification codes that mean "no trusted CA signed this certificate".
const untrusted = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
]);
const outOfDate = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * What is wrong with the server's certificate, with advice for the TLS failures people hit most,
 * or undefined when `error` is not about the certificate.
 */
function certificateProblem(code: string | undefined, message: string): string | undefined {
  if (code === undefined) return undefined;
  if (untrusted.has(code)) {
    return `the server's TLS certificate is not trusted (${code}: ${message}); pass tls.ca with the certificate of the CA that signed it`;
  }
  if (outOfDate.has(code)) {
    return `the server's TLS certificate is expired or not yet valid (${code}: ${message})`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the server's TLS certificate does not match the host name (${message}); connect with a host name the certificate names, or set tls.servername`;
  }
  return undefined;
}

/**
 * `what` and a readable reason; a refused server certificate gets its own class, so that
 * operators can alert on it. Never holds the URI's password.
 */
function failure(what: string, error: unknown): ConnectionError | CertificateError {
  const message = error instanceof Error ? error.message : String(error);
  const problem = certificateProblem(codeOf(error), message);
  return problem === undefined
    ? new ConnectionError(`${what}: ${message}`, { cause: error })
    : new CertificateError(`${what}: ${problem}`, { cause: error });
}

/** The attempt to connect failed. */
export function cannotConnect(uri: AmpsUri, error: unknown): ConnectionError | CertificateError {
  return failure(`cannot connect to ${uri.redacted}`, error);
}

/** An open connection failed. */
export function connectionLost(uri: AmpsUri, error: unknown): ConnectionError | CertificateError {
  return failure(`connection to ${uri.redacted} lost`, error);
}

// Preloaded into the gateway by tests/e2e/test_gateway.py (`NODE_OPTIONS=--import=<this file>`):
// the process has no network beyond loopback, whatever the machine has. Every host name other than
// localhost fails to resolve, as on a machine without network: getaddrinfo ENOTFOUND.
import dns from 'node:dns'

const lookup = dns.lookup
dns.lookup = function offlineLookup (hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options
    options = {}
  }
  if (hostname === 'localhost' || /^127\./.test(hostname) || hostname === '::1') {
    return lookup.call(this, hostname, options, callback)
  }
  const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`),
    { code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo', hostname })
  process.nextTick(callback, err)
  return {}
}

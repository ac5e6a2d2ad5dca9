'use strict'
// Stands in for iconv-lite in the function bundles (scripts/build.ts). The service talks utf8mb4 to MySQL
// only: mysql2 decodes and encodes that with Buffer itself and asks iconv-lite only for other character
// sets. Those are decoded with Node's own TextDecoder (it knows the common ones) instead of iconv-lite's
// half a megabyte of tables; encoding to another character set is refused with a clear error.
//
// CESU-8 is what mysql2 calls MySQL's 3-byte `utf8` (utf8mb3), in which a server may greet a client: it
// differs from UTF-8 only for characters outside the BMP, which utf8mb3 cannot hold, so for anything a
// utf8mb3 column or message can contain, UTF-8 decodes and encodes it exactly.
const AS_UTF8 = new Set(['cesu8', 'cesu-8'])

const unsupported = (encoding) =>
  new Error(`character set ${encoding} is not supported by this bundle; connect with utf8mb4`)

exports.encodingExists = (encoding) => {
  try {
    new TextDecoder(encoding)
    return true
  } catch {
    return false
  }
}

exports.getDecoder = (encoding) => {
  if (AS_UTF8.has(String(encoding).toLowerCase())) encoding = 'utf-8'
  let decoder
  try {
    decoder = new TextDecoder(encoding)
  } catch {
    throw unsupported(encoding)
  }
  return { write: (buffer) => decoder.decode(buffer, { stream: true }), end: () => decoder.decode() }
}

exports.decode = (buffer, encoding) => exports.getDecoder(encoding).write(buffer)

exports.encode = (text, encoding) => {
  if (AS_UTF8.has(String(encoding).toLowerCase())) return Buffer.from(text, 'utf8')
  if (Buffer.isEncoding(encoding)) return Buffer.from(text, encoding)
  throw unsupported(encoding)
}

exports.getEncoder = (encoding) => {
  exports.encode('', encoding)
  return { write: (text) => exports.encode(text, encoding), end: () => undefined }
}

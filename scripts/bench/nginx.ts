import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Child, startChild } from './processes'

/** Finds nginx, installing Debian's package when it is missing (the bench machine runs as root). */
export function ensureNginx(): string {
  const find = () => {
    for (const candidate of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']) {
      try {
        execFileSync(candidate, ['-v'], { stdio: 'ignore' })
        return candidate
      } catch {
        // not here
      }
    }
    return undefined
  }
  const found = find()
  if (found) return found
  process.stdout.write('nginx is missing: apt-get install -y nginx …\n')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 180_000 })
  execFileSync('apt-get', ['install', '-y', '-qq', 'nginx'], { stdio: 'inherit', env, timeout: 300_000 })
  const installed = find()
  if (!installed) throw new Error('nginx could not be installed; install it with `apt-get install -y nginx`')
  return installed
}

export function nginxVersion(binary: string): string {
  // nginx prints its version on stderr.
  const result = spawnSync(binary, ['-v'], { encoding: 'utf8' })
  return `${result.stderr ?? ''}${result.stdout ?? ''}`.trim() || 'nginx (version unknown)'
}

export type Proxy = { listen: number; upstream: number; name: string }

/**
 * One nginx config for every proxied pair, with identical proxy settings for each, so that the service
 * and its ceiling pay the same proxy cost. Everything nginx writes (pid, logs, temp files) stays in `dir`.
 */
export function nginxConfig(dir: string, proxies: Proxy[]): string {
  const temp = (name: string) => join(dir, name)
  const upstreams = proxies
    .map(
      (p) => `  upstream ${p.name} {
    server 127.0.0.1:${p.upstream};
    keepalive 128;
    keepalive_requests 1000000;
  }`,
    )
    .join('\n')
  const servers = proxies
    .map(
      (p) => `  server {
    listen 127.0.0.1:${p.listen} backlog=4096;
    location / {
      proxy_pass http://${p.name};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }`,
    )
    .join('\n')
  // Running as root, nginx would switch its worker to a user that cannot enter this temp dir.
  const user = process.getuid?.() === 0 ? 'user root;\n' : ''
  return `${user}worker_processes 1;
pid ${temp('nginx.pid')};
error_log ${temp('error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path ${temp('client_body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
${upstreams}
${servers}
}
`
}

/** nginx in the foreground (`daemon off`), a child of the bench, with its config in `dir` (removed on stop). */
export function startNginx(binary: string, dir: string, proxies: Proxy[]): Child {
  mkdirSync(dir, { recursive: true })
  chmodSync(dir, 0o755)
  const conf = join(dir, 'nginx.conf')
  writeFileSync(conf, nginxConfig(dir, proxies))
  // -e: the error log before the config is read (default /var/log/nginx, which may not be writable).
  execFileSync(binary, ['-t', '-q', '-p', dir, '-e', join(dir, 'error.log'), '-c', conf], { stdio: 'pipe' })
  const args = ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;']
  return startChild('nginx', binary, args, { afterStop: () => rmSync(dir, { recursive: true, force: true }) })
}

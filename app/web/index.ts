// `berth serve`: the window's API and UI over HTTP on loopback.
export {
  CONTENT_SECURITY_POLICY,
  DEFAULT_HOST,
  defaultStaticRoot,
  isLoopback,
  startWebServer,
  type WebServer,
  type WebServerOptions,
} from './server';

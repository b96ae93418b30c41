// The console's shell: navigation, hash routing to the pages, the shared poller, the error banner, and
// the login form when the cluster requires authentication.
// A page is one entry of PAGES (a new one is one more entry and one module); `count` puts a number by its nav link.

import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, startPolling } from './api.js';
import { html, useStore } from './ui.js';
import { Overview } from './overview.js';
import { TopicDetail, Topics } from './topics.js';
import { Messages } from './messages.js';
import { GroupDetail, Groups } from './groups.js';
import { Raft } from './raft.js';
import { Reassignments, movesInProgress, pollMoves } from './reassignments.js';
import { Login, WhoAmI } from './login.js';

const PAGES = [
  { path: /^\/?$/, nav: 'Overview', href: '#/', view: () => html`<${Overview} />` },
  { path: /^\/topics\/(.+)$/, view: ([name]) => html`<${TopicDetail} name=${name} />` },
  { path: /^\/topics$/, nav: 'Topics', href: '#/topics', view: () => html`<${Topics} />` },
  { path: /^\/messages$/, nav: 'Messages', href: '#/messages', view: (_, query) => html`<${Messages} query=${query} />` },
  { path: /^\/groups\/(.+)$/, view: ([name]) => html`<${GroupDetail} name=${name} />` },
  { path: /^\/groups$/, nav: 'Consumer groups', href: '#/groups', view: () => html`<${Groups} />` },
  { path: /^\/raft$/, nav: 'Raft', href: '#/raft', view: () => html`<${Raft} />` },
  { path: /^\/reassignments$/, nav: 'Reassignments', href: '#/reassignments', view: () => html`<${Reassignments} />`, count: movesInProgress },
];

function currentRoute() {
  const hash = decodeURIComponent(window.location.hash.replace(/^#/, ''));
  const [path, search = ''] = hash.split('?');
  return { path, query: Object.fromEntries(new URLSearchParams(search)) };
}

function App() {
  const [route, setRoute] = useState(currentRoute());
  const [self, setSelf] = useState(null);
  const store = useStore();
  useEffect(() => {
    const onChange = () => setRoute(currentRoute());
    window.addEventListener('hashchange', onChange);
    api('/health').then((doc) => setSelf(doc.broker)).catch(() => setSelf(null));
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  let body = html`<p>No such page: ${route.path}. <a href="#/">Overview</a></p>`;
  let active = null;
  for (const page of PAGES) {
    const match = page.path.exec(route.path);
    if (match) {
      body = page.view(match.slice(1), route.query);
      active = PAGES.find((p) => p.nav && route.path.startsWith(p.href.slice(1)) && p.href !== '#/') || (page.nav ? page : null);
      break;
    }
  }
  return html`
    <header>
      <a class="brand" href="#/">raftka</a>
      <nav>${PAGES.filter((p) => p.nav).map((p) => html`
        <a href=${p.href} class=${active === p ? 'active' : ''}>${p.nav}${p.count && p.count(store)
          ? html` <span class="count" data-testid=${`count-${p.href.slice(2)}`}>${p.count(store)}</span>` : null}</a>`)}</nav>
      <span class="served">${self === null ? '' : `served by broker ${self}`}</span>
      <${WhoAmI} principal=${store.principal} />
    </header>
    ${store.error && !store.loginNeeded ? html`<div class="error banner" role="alert" data-testid="banner">${store.error}</div>` : null}
    <main key=${route.path}>${store.loginNeeded ? html`<${Login} />` : body}</main>`;
}

startPolling(pollMoves);
const root = document.getElementById('app');
root.textContent = ''; // the static "Loading…" placeholder
render(html`<${App} />`, root);

// The DOM side the component tests share: a fresh container and React root per test, the
// providers a dialog or the window needs, and input the way a user's actions arrive.
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { act, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach } from 'vitest';

import { ApiContext } from '../src/context';
import { must, type FakeApi } from './fixtures';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

// Registers the per-test container; read dom.container inside a test.
export function domPerTest(): { readonly container: HTMLDivElement; render: (ui: ReactNode) => Promise<void> } {
  let container: HTMLDivElement | undefined;
  let root: Root | undefined;
  beforeEach(() => {
    container = document.createElement('div');
    document.body.appendChild(container);
    root = createRoot(container);
  });
  afterEach(() => {
    act(() => root?.unmount());
    container?.remove();
  });
  return {
    get container() {
      return must(container, 'the test container');
    },
    render: async (ui) => {
      await act(async () => must(root, 'the React root').render(ui));
    },
  };
}

export function newQueryClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
}

export function withApi(api: FakeApi, client: QueryClient, ui: ReactNode): ReactNode {
  return (
    <ApiContext.Provider value={api}>
      <QueryClientProvider client={client}>{ui}</QueryClientProvider>
    </ApiContext.Provider>
  );
}

export const buttonNamed = (container: HTMLElement, text: string): HTMLButtonElement =>
  must(
    [...container.querySelectorAll<HTMLButtonElement>('button')].find((b) => b.textContent?.trim() === text),
    `the button '${text}'`,
  );
export const click = (el: HTMLElement) => act(async () => el.click());
// Types into a React-controlled input the way a user's keystrokes end up.
export const type = (input: HTMLInputElement, value: string) =>
  act(async () => {
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value')?.set;
    setter?.call(input, value);
    input.dispatchEvent(new Event('input', { bubbles: true }));
  });

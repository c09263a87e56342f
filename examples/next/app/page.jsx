import { ConnectAccount } from './connect-account.jsx';

export default function Home() {
  return (
    <main>
      <h1>Example app</h1>
      <p>This app uses your demo account. Sign in to it once, in the window below; the app never sees your password.</p>
      <ConnectAccount />
    </main>
  );
}

'use client';

import { useEffect, useRef, useState } from 'react';

/** The button, then porthole's viewer in a frame on this page, then who is connected. */
export function ConnectAccount() {
  const frame = useRef(null);
  const viewer = useRef(null);
  const [status, setStatus] = useState('idle');
  const [sentence, setSentence] = useState('');
  const [account, setAccount] = useState(null);

  useEffect(() => () => viewer.current?.destroy?.(), []);

  async function connect() {
    setStatus('starting');
    setSentence('Starting…');
    try {
      const response = await fetch('/api/connect', { method: 'POST' });
      if (!response.ok) throw new Error(`the app's server answered ${response.status}`);
      const { viewerUrl } = await response.json();
      const { mountViewer } = await import('@porthole/sdk/browser');
      // The person signing in is not porthole's operator: no link to porthole's dashboard.
      viewer.current = mountViewer(frame.current, { viewerUrl, hide: ['dashboard'] });
      viewer.current.on('state', (message) => setSentence(message.sentence));
      viewer.current.on('completed', (message) => {
        setAccount(message.account ?? 'your demo account');
        setStatus('completed');
      });
      viewer.current.on('failed', (message) => {
        setSentence(message.sentence);
        setStatus('failed');
      });
      setStatus('signing-in');
    } catch (error) {
      setSentence(`Could not start: ${error.message}`);
      setStatus('failed');
    }
  }

  return (
    <section data-status={status}>
      {status === 'idle' || status === 'failed' ? (
        <button type="button" id="connect" onClick={connect}>
          Connect your demo account
        </button>
      ) : null}
      {status === 'completed' ? (
        <p id="connected" className="connected">
          Connected as {account}
        </p>
      ) : (
        <p id="sentence">{sentence}</p>
      )}
      <div ref={frame} id="viewer" className="viewer" hidden={status === 'idle'} />
    </section>
  );
}

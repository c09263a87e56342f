import './app.css';

export const metadata = { title: 'Example app — connect through porthole' };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}

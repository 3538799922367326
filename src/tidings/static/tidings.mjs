/* tidings.mjs: tidings.js as an ES module, for bundlers, Node and <script type="module">:
 *
 *   import { connect } from "/tidings/tidings.mjs";   // served beside /tidings/tidings.js
 *   const socket = connect();
 *
 * The code is tidings.js's own, not a copy: imported for its effect, it leaves the client on
 * globalThis.tidings (in browsers, where a classic script exports nothing to a module, and in Node,
 * where it is loaded as CommonJS alike).
 */
import "./tidings.js";

const tidings = globalThis.tidings;
export const { connect, Socket, protocol } = tidings;
export default tidings;

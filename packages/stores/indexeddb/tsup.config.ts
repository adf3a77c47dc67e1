import { libraryConfig } from '@amps-ts/config/tsup';

export default libraryConfig();
